"""Sessions of the trading engine server as records: who logged on, when, and how it ended.

The TES calls `logged_on` when it accepts a logon and `logged_off` when the session ends
(`servers.protocol.EndReason`: logout, timeout, replaced, shutdown, slow consumer); times are
its wall clock, nanoseconds since the epoch. A session still open has no logout time.
"""

import msgspec
from sqlalchemy import Connection, select, update

from database.models import Session
from servers.protocol import EndReason


def logged_on(connection: Connection, trader_id: str, time: int) -> int:
    """Record a session starting; return its id (for `logged_off`)."""
    return connection.execute(
        Session.__table__.insert().returning(Session.session_id), {"trader_id": trader_id, "logon_time": time}
    ).scalar_one()


def logged_off(connection: Connection, session_id: int, time: int, reason: EndReason) -> None:
    """Record how and when session ``session_id`` ended (once: a later call changes nothing)."""
    connection.execute(
        update(Session).where(Session.session_id == session_id, Session.logout_time.is_(None))
        .values(logout_time=time, end_reason=int(reason))
    )


class SessionRecord(msgspec.Struct, frozen=True):
    session_id: int
    logon_time: int
    logout_time: int | None
    end_reason: EndReason | None
    """None while the session lasts."""


def sessions(connection: Connection, trader_id: str, start: int, end: int) -> list[SessionRecord]:
    """The trader's sessions that started in [start, end), oldest first."""
    rows = connection.execute(
        select(Session.session_id, Session.logon_time, Session.logout_time, Session.end_reason)
        .where(Session.trader_id == trader_id, Session.logon_time >= start, Session.logon_time < end)
        .order_by(Session.logon_time, Session.session_id)
    )
    return [SessionRecord(row.session_id, row.logon_time, row.logout_time,
                          None if row.end_reason is None else EndReason(row.end_reason)) for row in rows]
