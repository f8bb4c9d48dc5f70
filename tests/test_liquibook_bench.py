"""The optional Liquibook comparison (`benchmarks.liquibook.run`): a one-line reason, never an
error, when Liquibook's source or g++ is missing; with LIQUIBOOK_DIR set, Liquibook itself replays
a small standard workload with the same fills as our native book, record for record."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks.liquibook import run
from engine import workload
from engine.stream import (
    CANCEL,
    FILL_DTYPE,
    LIMIT_FOK,
    LIMIT_GTC,
    LIMIT_IOC,
    MARKET,
    REPLACE,
    STREAM_DTYPE,
    STREAM_V2_DTYPE,
)
from native.book import NativeBook

LIQUIBOOK = os.environ.get(run.ENV_VAR)
needs_liquibook = pytest.mark.skipif(
    not LIQUIBOOK, reason=f"Liquibook not measured: set {run.ENV_VAR} to a Liquibook source directory")


@pytest.fixture(scope="module")
def small_stream():
    return workload.standard(2_000, 42)


def fake_source(tmp_path: Path) -> Path:
    """A directory that passes the source check (it has src/book/order_book.h) but holds no Liquibook."""
    header = tmp_path / "liquibook" / run.HEADER
    header.parent.mkdir(parents=True)
    header.write_text("#error not Liquibook\n")
    return tmp_path / "liquibook"


def assert_reason(result, *words: str):
    assert isinstance(result, str) and "\n" not in result and result.startswith("Liquibook skipped:"), result
    for word in words:
        assert word in result


def test_missing_directory_gives_one_line_reason(small_stream, tmp_path):
    assert_reason(run.measure(small_stream, tmp_path / "nowhere", 1), "nowhere", str(run.HEADER))


def test_no_directory_configured_gives_one_line_reason(small_stream, monkeypatch):
    monkeypatch.delenv(run.ENV_VAR, raising=False)
    assert run.configured_source(None) is None
    assert_reason(run.measure(small_stream, run.configured_source(None), 1), run.ENV_VAR, "--liquibook")


def test_option_overrides_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(run.ENV_VAR, str(tmp_path / "from-env"))
    assert run.configured_source(None) == tmp_path / "from-env"
    assert run.configured_source(str(tmp_path / "from-option")) == tmp_path / "from-option"


def test_compiler_missing_gives_one_line_reason(small_stream, tmp_path, monkeypatch):
    source = fake_source(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert_reason(run.measure(small_stream, source, 1), "g++")


@pytest.mark.skipif(not shutil.which(run.CXX), reason="g++ not found on PATH")
def test_source_that_does_not_compile_gives_one_line_reason(small_stream, tmp_path):
    assert_reason(run.measure(small_stream, fake_source(tmp_path), 1), "does not compile")


def test_version_2_stream_raises(tmp_path):
    with pytest.raises(ValueError, match="version-1"):
        run.measure(np.zeros(3, dtype=STREAM_V2_DTYPE), tmp_path, 1)


def test_cli_without_source_exits_with_reason(monkeypatch):
    monkeypatch.delenv(run.ENV_VAR, raising=False)
    with pytest.raises(SystemExit) as stop:
        run.main(["--messages", "10"])
    assert str(stop.value).startswith("Liquibook skipped:")


@needs_liquibook
def test_liquibook_replays_standard_workload_with_our_fills(tmp_path):
    stream = workload.standard(20_000, 42)
    fills = tmp_path / "fills.bin"
    result = run.measure(stream, Path(LIQUIBOOK), 1, fills=fills)
    assert isinstance(result, dict), result
    assert [r["mode"] for r in result["runs"]] == ["book", "per-message"]
    assert all(r["messages"] == 20_000 for r in result["runs"])
    assert result["fills"] > 0 and result["rejected"] == 0
    assert result["book_msgs_per_s"] > 0 and result["per_message_msgs_per_s"] > 0
    book = NativeBook()
    ours = book.replay(stream).fills
    assert np.array_equal(np.fromfile(fills, dtype=FILL_DTYPE), ours)
    assert result["fills"] == len(ours) and result["filled_qty"] == int(ours["qty"].sum())
    assert result["resting"] == len(book)


def rows(*messages) -> np.ndarray:
    """A stream from (kind, side, price, qty, target_id) rows; ids are 1, 2, ..."""
    stream = np.zeros(len(messages), dtype=STREAM_DTYPE)
    for index, (kind, side, price, qty, target) in enumerate(messages):
        stream[index] = (kind, side, price, qty, index + 1, target)
    return stream


def kinds_stream(replace_qty: int) -> np.ndarray:
    """id 1 sell 10@100; 2 sell 5@100; 3 FOK buy 20@100 (cannot fill: Liquibook cancels it, we
    reject it); 4 IOC buy 3@100 (3 from id 1, the rest dropped); 5 replace id 1 to replace_qty@100;
    6 market buy 6; 7 cancel id 1; 8 cancel id 1 again (not live: rejected); 9 sell 0@100 (rejected)."""
    return rows((LIMIT_GTC, 1, 100, 10, 0), (LIMIT_GTC, 1, 100, 5, 0), (LIMIT_FOK, 0, 100, 20, 0),
                (LIMIT_IOC, 0, 100, 3, 0), (REPLACE, 0, 100, replace_qty, 1), (MARKET, 0, 0, 6, 0),
                (CANCEL, 0, 0, 0, 1), (CANCEL, 0, 0, 0, 1), (LIMIT_GTC, 1, 100, 0, 0))


def liquibook_fills(stream: np.ndarray, tmp_path: Path) -> tuple[list, dict]:
    fills = tmp_path / "fills.bin"
    result = run.measure(stream, Path(LIQUIBOOK), 1, fills=fills)
    assert isinstance(result, dict), result
    return np.fromfile(fills, dtype=FILL_DTYPE).tolist(), result


@needs_liquibook
def test_liquibook_kinds_same_fills_as_ours_rejects_differ_by_fok(tmp_path):
    # Replacing id 1's open 7 by 9 at the same price: both books move it behind id 2.
    stream = kinds_stream(replace_qty=9)
    theirs, result = liquibook_fills(stream, tmp_path)
    assert theirs == [(1, 4, 100, 3), (2, 6, 100, 5), (1, 6, 100, 1)]
    ours = NativeBook().replay(stream)
    assert ours.fills.tolist() == theirs
    assert (result["rejected"], ours.rejected) == (2, 3)
    assert result["resting"] == 0


@needs_liquibook
def test_liquibook_replace_same_price_not_larger_loses_priority_ours_keeps_it(tmp_path):
    # Replacing id 1's open 7 by 7 at the same price: ours keeps it ahead of id 2, Liquibook does not.
    stream = kinds_stream(replace_qty=7)
    theirs, _ = liquibook_fills(stream, tmp_path)
    assert theirs == [(1, 4, 100, 3), (2, 6, 100, 5), (1, 6, 100, 1)]
    assert NativeBook().replay(stream).fills.tolist() == [(1, 4, 100, 3), (1, 6, 100, 6)]
