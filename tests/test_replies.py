"""`native.replies.Replies`, the replies a shard keeps for a TES's Hello, against a model: a deque of
``(sequence, reply, concerned)`` with a ``maxlen``, emptied where a sequence does not follow."""

import sys
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from native.replies import Replies

STEPS = st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=6), st.lists(st.integers(1, 4), max_size=3)),
                 max_size=60)


def model_append(model: deque, sequence: int, reply: bytes, concerned: tuple) -> None:
    if model and sequence != model[-1][0] + 1:
        model.clear()
    model.append((sequence, reply, concerned))


@given(st.integers(0, 7), STEPS, st.integers(1, 4), st.integers(0, 70))
def test_the_ring_keeps_what_a_deque_of_maxlen_keeps(maxlen, steps, tes_id, start):
    """Each step's sequence is the next one, or skips ahead (gap 1 to 3: the ring starts afresh)."""
    ring, model, sequence = Replies(maxlen), deque(maxlen=maxlen), 10
    for gap, reply, concerned in steps:
        sequence += 1 + (gap == 3) * gap
        ring.append(sequence, reply, tuple(concerned))
        model_append(model, sequence, reply, tuple(concerned))
        assert list(ring) == list(model) and len(ring) == len(model)
        assert ring.first == (model[0][0] if model else None)
    assert ring.concerning(tes_id, 10 + start) == [r for s, r, c in model if s >= 10 + start and tes_id in c]
    for kept in (0, 1, maxlen, maxlen + 2):
        assert list(ring.kept(kept)) == list(deque(model, maxlen=kept))
        assert ring.kept(kept).maxlen == kept


def test_the_ring_holds_a_reference_to_each_reply_kept_and_drops_it_when_it_goes():
    ring, reply, concerned = Replies(2), b"reply of sequence one" * 3, (1, 2)
    before = sys.getrefcount(reply), sys.getrefcount(concerned)
    ring.append(1, reply, concerned)
    assert (sys.getrefcount(reply), sys.getrefcount(concerned)) == (before[0] + 1, before[1] + 1)
    ring.append(2, b"two", ())
    ring.append(3, b"three", ())
    assert (sys.getrefcount(reply), sys.getrefcount(concerned)) == before, "the oldest went"
    ring.append(4, reply, concerned)
    ring.append(9, b"after a gap", ())
    assert (sys.getrefcount(reply), sys.getrefcount(concerned)) == before and list(ring) == [(9, b"after a gap", ())]
    ring.append(10, reply, concerned)
    del ring
    assert (sys.getrefcount(reply), sys.getrefcount(concerned)) == before, "freed with the ring"


def test_a_reply_is_bytes_and_its_concerned_ids_a_tuple():
    ring = Replies(4)
    with pytest.raises(TypeError):
        ring.append(1, "not bytes", ())
    with pytest.raises(TypeError):
        ring.append(1, b"reply", [1])
    with pytest.raises(ValueError):
        Replies(-1)
    assert len(ring) == 0 and ring.first is None
