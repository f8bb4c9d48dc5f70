"""A generated stream does not depend on the book that simulated it: the reference and the native
book give the same bytes, and the default (`engine.workload.fastest_book`, the native book when it
is built) gives them too. The generators read the books' events, best prices, ``len`` and
``order(id)``, so this holds as long as the books are event for event identical."""

import pytest

from engine import advanced_workload, workload
from engine.book import ReferenceBook

native = pytest.importorskip("native.book", reason="the native book is not built: run `make build`")

GENERATORS = {
    # four cycles: every CYCLE_PLAN entry (calls, halts, their uncrosses), the last one cut short
    "advanced": lambda book: advanced_workload.advanced(4 * advanced_workload.CYCLE - 500, 21, book=book),
    "standard": lambda book: workload.standard(20_000, 21, book=book),
    "deep": lambda book: workload.deep(12_000, 21, resting=4_000, levels=3, book=book),
}


def test_fastest_book_is_the_native_book_when_built():
    assert type(workload.fastest_book()) is native.NativeBook


@pytest.mark.parametrize("profile", sorted(GENERATORS))
def test_reference_and_native_simulations_give_the_same_bytes(profile):
    generate = GENERATORS[profile]
    by_reference = generate(ReferenceBook)
    by_native = generate(native.NativeBook)
    assert len(by_reference) > 0
    assert by_native.dtype == by_reference.dtype
    assert by_native.tobytes() == by_reference.tobytes()


def test_advanced_default_book_gives_the_reference_books_bytes():
    messages = advanced_workload.CYCLE + advanced_workload.CALL_MESSAGES
    default = advanced_workload.advanced(messages, 22)
    assert default.tobytes() == advanced_workload.advanced(messages, 22, book=ReferenceBook).tobytes()
