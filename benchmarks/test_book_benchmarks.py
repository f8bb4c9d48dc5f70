"""pytest-benchmark suites for the matching core: `make bench-suite` (or `pytest benchmarks`).

Each benchmark replays the same stream on a fresh book per round and then checks
the final state against the reference book's, so a fast wrong engine fails.
The one-run comparison table with ratios is `python main.py bench book`.
"""

import pytest

from engine import workload
from engine.book import ReferenceBook
from engine.replay import replay_rows
from native.book import NativeBook

MESSAGES = 200_000


@pytest.fixture(scope="module")
def standard():
    stream = workload.standard(MESSAGES, seed=42)
    reference = ReferenceBook()
    replay_rows(reference, stream.tolist())
    return stream, stream.tolist(), reference.state_hash()


@pytest.fixture(scope="module")
def deep():
    stream = workload.deep(MESSAGES, seed=7, resting=100_000)
    book = NativeBook()
    book.replay(stream)
    return stream, book.state_hash()


def _per_message(benchmark, factory, rows):
    books = []

    def run():
        books.append(factory())
        replay_rows(books[-1], rows)

    benchmark.pedantic(run, rounds=3, iterations=1)
    return books[-1]


def test_reference_per_message(benchmark, standard):
    _, rows, expected = standard
    assert _per_message(benchmark, ReferenceBook, rows).state_hash() == expected


def test_native_per_message(benchmark, standard):
    _, rows, expected = standard
    assert _per_message(benchmark, NativeBook, rows).state_hash() == expected


def test_native_batch(benchmark, standard):
    stream, _, expected = standard
    books = []

    def run():
        books.append(NativeBook())
        books[-1].replay(stream)

    benchmark.pedantic(run, rounds=10, iterations=1)
    assert books[-1].state_hash() == expected


def test_native_batch_deep_book(benchmark, deep):
    stream, expected = deep
    books = []

    def run():
        books.append(NativeBook())
        books[-1].replay(stream)

    benchmark.pedantic(run, rounds=5, iterations=1)
    assert books[-1].state_hash() == expected
    assert len(books[-1]) > 50_000
