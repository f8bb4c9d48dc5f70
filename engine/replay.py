"""Driving a book with stream messages one at a time, and the replay summary.

`replay_rows` (version 1) and `replay_rows_v2` (version 2) are the per-message path:
each stream record becomes one call to the book's Python API. The reference book
replays this way (`replay_stream` picks the version by the dtype); for the native book
it is the "per-message API" that the benchmarks compare with its batch replay.
`replay_rows_records` and `replay_rows_v2_records` (the native book only) are the same
paths through the book's record API: one call per message, no event object, the events
taken as one EVENT_DTYPE array at the end.

A message counts as rejected when the book answers it with a rejection event, or when
its kind is unknown (it never reaches the book); every other message is accepted,
including an order that self-trade prevention or its FOK release later cancels.
"""

import json
import time

import numpy as np

from engine.messages import CancelRejected, CommandRejected, OrderFilled, OrderRejected, ReplaceRejected
from engine.progress import Report
from engine.stream import (
    CANCEL,
    CLOCK,
    FILL_DTYPE,
    LIMIT_FOK,
    LIMIT_GTC,
    LIMIT_IOC,
    MARKET,
    PHASE,
    REPLACE,
    STOP,
    STOP_LIMIT,
    EventKind,
    ReplayResult,
    check_stream,
    is_v2,
)
from engine.types import OrderType, TimeInForce

LIMIT, MARKET_TYPE = OrderType.LIMIT, OrderType.MARKET
STOP_TYPE, STOP_LIMIT_TYPE = OrderType.STOP, OrderType.STOP_LIMIT
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
V2_TIFS = (TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK, TimeInForce.GTD)
"""Version 2's ``tif`` field 0..3 as the API's TimeInForce (3 is GTD)."""
UNKNOWN_TIF = 255
"""What a version-2 ``tif`` above 3 becomes for the API: no TimeInForce (so it is refused as
unknown), never the API's own 4 (GTD)."""
REJECTIONS = (OrderRejected, CancelRejected, ReplaceRejected, CommandRejected)
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


def replay_rows_records(book, rows) -> ReplayResult:
    """Feed ``rows`` (a sequence of tuples in STREAM_DTYPE field order) to a native ``book``, one
    record_* call each (its log empty before), then take its events; the result equals
    `replay_rows`'s.

    A rejected command records one event, its reject, and an accepted one none, so the rejected
    messages are the reject records plus the unknown kinds (which never reach the book).
    """
    unknown = 0
    submit, cancel, replace = book.record_submit, book.record_cancel, book.record_replace
    limit, market, gtc, ioc, fok = int(LIMIT), int(MARKET_TYPE), int(GTC), int(IOC), int(FOK)
    for kind, side, price, qty, order_id, target_id in rows:
        if kind == LIMIT_GTC:
            submit(order_id, side, limit, gtc, price, qty)
        elif kind == CANCEL:
            cancel(target_id)
        elif kind == MARKET:
            submit(order_id, side, market, ioc, 0, qty)
        elif kind == LIMIT_IOC:
            submit(order_id, side, limit, ioc, price, qty)
        elif kind == LIMIT_FOK:
            submit(order_id, side, limit, fok, price, qty)
        elif kind == REPLACE:
            replace(target_id, price, qty)
        else:
            unknown += 1
    return records_result(book.take_events(), len(rows), unknown)


def records_result(records: np.ndarray, messages: int, unknown: int) -> ReplayResult:
    """The ReplayResult of ``messages`` messages whose commands recorded ``records`` (EVENT_DTYPE),
    ``unknown`` of them of an unknown kind: the FILLED records as fills, one rejected message per
    reject record."""
    kinds = np.ascontiguousarray(records["kind"])   # one pass over the records, then over bytes
    at = np.flatnonzero(kinds == EventKind.FILLED)
    fills = np.empty(len(at), dtype=FILL_DTYPE)   # field by field: no copy of the whole FILLED records
    for field, source in (("maker_id", "order_id"), ("taker_id", "other_id"), ("price", "price"), ("qty", "quantity")):
        fills[field] = records[source][at]
    rejects = (kinds >= EventKind.REJECTED) & (kinds <= EventKind.COMMAND_REJECTED)
    rejected = unknown + int(np.count_nonzero(rejects))
    return ReplayResult(fills, messages - rejected, rejected)


def apply_row_v2(book, row) -> list:
    """Send one STREAM_V2_DTYPE record (a tuple in field order) to ``book``; return its events, or
    None for an unknown kind (4 and 5 included), which never reaches the book (`send_row_v2`)."""
    return send_row_v2(row, book.submit, book.cancel, book.replace, book.set_phase, book.set_clock)


def send_row_v2(row, submit, cancel, replace, set_phase, set_clock):
    """Send one STREAM_V2_DTYPE record (a tuple in field order) to a book's command methods, the
    classic ones or the native book's record_* ones; return what the method returned, or None for
    an unknown kind (4 and 5 included), which never reaches the book.

    Each kind passes the book only the fields it reads (the others are ignored, never
    validated), except ``display_qty``, which every new order passes.
    """
    kind, side, tif, flags, stp, price, qty, order_id, target_id, stop_price, display, owner, expire_at = row
    if kind == CANCEL:
        return cancel(target_id)
    if kind == REPLACE:
        return replace(target_id, price, qty)
    if kind == PHASE:
        return set_phase(qty)
    if kind == CLOCK:
        return set_clock(price)
    tif = V2_TIFS[tif] if tif < 4 else UNKNOWN_TIF
    if kind == LIMIT_GTC:
        return submit(order_id, side, LIMIT, tif, price, qty, display_quantity=display, flags=flags, owner=owner,
                      stp=stp, expire_at=expire_at)
    if kind == MARKET:
        return submit(order_id, side, MARKET_TYPE, tif, 0, qty, display_quantity=display, flags=flags, owner=owner,
                      stp=stp)
    if kind == STOP:
        return submit(order_id, side, STOP_TYPE, GTC, 0, qty, stop_price=stop_price, display_quantity=display,
                      flags=flags, owner=owner, stp=stp)
    if kind == STOP_LIMIT:
        return submit(order_id, side, STOP_LIMIT_TYPE, tif, price, qty, stop_price=stop_price,
                      display_quantity=display, flags=flags, owner=owner, stp=stp, expire_at=expire_at)
    return None


def replay_rows_v2(book, rows) -> ReplayResult:
    """Feed ``rows`` (tuples in STREAM_V2_DTYPE field order) to ``book`` one call each (`send_row_v2`);
    an unknown kind is counted as rejected."""
    fills = []
    accepted = rejected = 0
    submit, cancel, replace = book.submit, book.cancel, book.replace
    set_phase, set_clock = book.set_phase, book.set_clock
    for row in rows:
        events = send_row_v2(row, submit, cancel, replace, set_phase, set_clock)
        if events is None or type(events[0]) in REJECTIONS:
            rejected += 1
            continue
        accepted += 1
        for event in events:
            if type(event) is OrderFilled:
                fills.append((event.maker_id, event.taker_id, event.price, event.quantity))
    return ReplayResult(np.array(fills, dtype=FILL_DTYPE), accepted, rejected)


def replay_rows_v2_records(book, rows) -> ReplayResult:
    """`replay_rows_v2` through a native ``book``'s record API (its log empty before), as
    `replay_rows_records` does for version 1; the result equals `replay_rows_v2`'s."""
    unknown = 0
    submit, cancel, replace = book.record_submit, book.record_cancel, book.record_replace
    set_phase, set_clock = book.record_set_phase, book.record_set_clock
    for row in rows:
        if send_row_v2(row, submit, cancel, replace, set_phase, set_clock) is None:
            unknown += 1
    return records_result(book.take_events(), len(rows), unknown)


def replay_stream(book, stream) -> ReplayResult:
    """Replay a version 1 or 2 stream through ``book`` message by message (StreamError if it is
    neither)."""
    stream = check_stream(stream)
    return (replay_rows_v2 if is_v2(stream) else replay_rows)(book, stream.tolist())


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
