"""`servers.collector.settle`: start-up objects frozen, young-generation passes rare."""

import gc

import pytest

from servers import collector


@pytest.fixture
def restored_collector():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_what_is_alive_and_raises_only_the_young_threshold(restored_collector):
    middle, old = gc.get_threshold()[1:]
    start_up = {"configuration": [1, 2, 3]}
    assert any(obj is start_up for obj in gc.get_objects())
    collector.settle()
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, middle, old)
    assert gc.get_freeze_count() > 0
    assert not any(obj is start_up for obj in gc.get_objects()), "frozen: no generation holds it"
    later = {"order": [4]}
    assert any(obj is later for obj in gc.get_objects())
