"""pytest-benchmark suites for the matching core: `pytest -n 0 benchmarks` (pytest-benchmark times
nothing in pytest-xdist's workers, which the project's pytest options start).

Each benchmark replays the same stream (standard, advanced or deep) on a fresh book per
round and then checks the final state against the reference book's, so a fast wrong engine
fails (the baseline book, `benchmarks.baseline_book`, replays the standard stream only: it
reads version 1); the uncross benchmark times ``set_phase(CONTINUOUS)`` on a call book built
afresh per round (`benchmarks.book.call_book`) and checks its events against the reference book's.
The one-run comparison table with ratios is `python main.py bench book`.
"""

import pytest

from benchmarks.baseline_book import BaselineBook
from benchmarks.book import UNCROSS_ORDERS, call_book
from engine import advanced_workload, workload
from engine.book import ReferenceBook
from engine.replay import replay_rows, replay_rows_records, replay_rows_v2, replay_rows_v2_records
from engine.types import Phase
from native.book import NativeBook

MESSAGES = 200_000


@pytest.fixture(scope="module")
def standard():
    stream = workload.standard(MESSAGES, seed=42)
    reference = ReferenceBook()
    replay_rows(reference, stream.tolist())
    return stream, stream.tolist(), reference.state_hash()


@pytest.fixture(scope="module")
def advanced():
    stream = advanced_workload.advanced(MESSAGES, seed=42)
    reference = ReferenceBook()
    replay_rows_v2(reference, stream.tolist())
    return stream, stream.tolist(), reference.state_hash()


@pytest.fixture(scope="module")
def deep():
    stream = workload.deep(MESSAGES, seed=7, resting=100_000)
    book = NativeBook()
    book.replay(stream)
    return stream, book.state_hash()


def _replayed(benchmark, factory, feed, data, rounds=3):
    """The last of ``rounds`` fresh books from ``factory``, each fed ``data`` by ``feed(book, data)``
    under the benchmark's clock."""
    books = []

    def run():
        books.append(factory())
        feed(books[-1], data)

    benchmark.pedantic(run, rounds=rounds, iterations=1)
    return books[-1]


def test_reference_per_message(benchmark, standard):
    _, rows, expected = standard
    assert _replayed(benchmark, ReferenceBook, replay_rows, rows).state_hash() == expected


def test_native_per_message(benchmark, standard):
    _, rows, expected = standard
    assert _replayed(benchmark, NativeBook, replay_rows, rows).state_hash() == expected


def test_native_per_message_records(benchmark, standard):
    _, rows, expected = standard
    assert _replayed(benchmark, NativeBook, replay_rows_records, rows).state_hash() == expected


def test_baseline_replay(benchmark, standard):
    _, rows, expected = standard
    assert _replayed(benchmark, BaselineBook, BaselineBook.replay_rows, rows).state_hash() == expected


def test_native_batch(benchmark, standard):
    stream, _, expected = standard
    assert _replayed(benchmark, NativeBook, NativeBook.replay, stream, rounds=10).state_hash() == expected


def test_native_batch_deep_book(benchmark, deep):
    stream, expected = deep
    book = _replayed(benchmark, NativeBook, NativeBook.replay, stream, rounds=5)
    assert book.state_hash() == expected
    assert len(book) > 50_000


def test_reference_per_message_advanced(benchmark, advanced):
    _, rows, expected = advanced
    assert _replayed(benchmark, ReferenceBook, replay_rows_v2, rows).state_hash() == expected


def test_native_per_message_advanced(benchmark, advanced):
    _, rows, expected = advanced
    assert _replayed(benchmark, NativeBook, replay_rows_v2, rows).state_hash() == expected


def test_native_per_message_records_advanced(benchmark, advanced):
    _, rows, expected = advanced
    assert _replayed(benchmark, NativeBook, replay_rows_v2_records, rows).state_hash() == expected


def test_native_batch_advanced(benchmark, advanced):
    stream, _, expected = advanced
    assert _replayed(benchmark, NativeBook, NativeBook.replay, stream, rounds=10).state_hash() == expected


def test_native_uncross_of_a_call_book(benchmark):
    stream = call_book(UNCROSS_ORDERS)
    reference = ReferenceBook()
    replay_rows_v2(reference, stream.tolist())
    expected = reference.set_phase(Phase.CONTINUOUS)

    def build():
        events.clear()   # the last round's events are freed here, not in the timed call
        book = NativeBook()
        book.replay(stream)
        return (book,), {}

    def uncross(book):
        events.append(book.set_phase(Phase.CONTINUOUS))

    events = []
    benchmark.pedantic(uncross, setup=build, rounds=10, iterations=1)
    assert events[-1] == expected
