"""Driving a book with stream messages one at a time, and the replay summary.

`replay_rows` is the per-message path: each stream record becomes one call to
the book's Python API. The reference book replays this way; for the native book
it is the "per-message API" that the benchmarks compare with its batch replay.
"""

import json
import time

import numpy as np

from engine.messages import CancelRejected, OrderFilled, OrderRejected, ReplaceRejected
from engine.progress import Report
from engine.stream import (
    CANCEL,
    FILL_DTYPE,
    LIMIT_FOK,
    LIMIT_GTC,
    LIMIT_IOC,
    MARKET,
    REPLACE,
    ReplayResult,
    check_stream,
)
from engine.types import OrderType, TimeInForce

LIMIT, MARKET_TYPE = OrderType.LIMIT, OrderType.MARKET
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
REJECTIONS = (OrderRejected, CancelRejected, ReplaceRejected)
REPLAY_CHUNK = 1 << 18
"""Messages per call of ``book.replay`` in `timed_replay`: about 30 ms of the native book's
batch replay, half a second of the reference book's, so the calls between cost nothing."""


def replay_rows(book, rows) -> ReplayResult:
    """Feed ``rows`` (tuples in STREAM_DTYPE field order) to ``book`` one call each.

    An unknown kind is counted as rejected without reaching the book.
    """
    fills = []
    accepted = rejected = 0
    submit, cancel, replace = book.submit, book.cancel, book.replace
    for kind, side, price, qty, order_id, target_id in rows:
        if kind == LIMIT_GTC:
            events = submit(order_id, side, LIMIT, GTC, price, qty)
        elif kind == CANCEL:
            events = cancel(target_id)
        elif kind == MARKET:
            events = submit(order_id, side, MARKET_TYPE, IOC, 0, qty)
        elif kind == LIMIT_IOC:
            events = submit(order_id, side, LIMIT, IOC, price, qty)
        elif kind == LIMIT_FOK:
            events = submit(order_id, side, LIMIT, FOK, price, qty)
        elif kind == REPLACE:
            events = replace(target_id, price, qty)
        else:
            rejected += 1
            continue
        if type(events[0]) in REJECTIONS:
            rejected += 1
            continue
        accepted += 1
        for event in events:
            if type(event) is OrderFilled:
                fills.append((event.maker_id, event.taker_id, event.price, event.quantity))
    return ReplayResult(np.array(fills, dtype=FILL_DTYPE), accepted, rejected)


def summarize(book, stream: np.ndarray, result: ReplayResult, seconds: float) -> dict:
    """The replay command's summary line, as a dict in its documented key order."""
    messages = len(stream)
    return {
        "messages": messages,
        "accepted": result.accepted,
        "rejected": result.rejected,
        "fills": len(result.fills),
        "filled_qty": int(result.fills["qty"].sum()),
        "resting_orders": len(book),
        "best_bid": book.best_bid(),
        "best_ask": book.best_ask(),
        "seconds": round(seconds, 6),
        "msgs_per_s": round(messages / seconds) if seconds > 0 else None,
    }


def timed_replay(book, stream: np.ndarray, progress: Report | None = None) -> tuple[ReplayResult, float]:
    """Replay ``stream`` through ``book``; return the result and the matching time in seconds.

    The stream goes to ``book.replay`` in slices of REPLAY_CHUNK messages, the book keeping its
    state from one to the next, so the result is that of one call; ``progress``, if given, is
    called with the messages replayed so far after each slice, outside the timed calls.
    """
    stream = check_stream(stream)
    fills, accepted, rejected, seconds = [], 0, 0, 0.0
    for start in range(0, len(stream), REPLAY_CHUNK):
        part = stream[start : start + REPLAY_CHUNK]
        began = time.perf_counter()
        result = book.replay(part)
        seconds += time.perf_counter() - began
        fills.append(result.fills)
        accepted, rejected = accepted + result.accepted, rejected + result.rejected
        if progress is not None:
            progress(start + len(part))
    fills = np.concatenate(fills) if fills else np.zeros(0, dtype=FILL_DTYPE)
    return ReplayResult(fills, accepted, rejected), seconds


def summary_line(summary: dict) -> str:
    return json.dumps(summary)
