"""The order lifecycle as one explicit state-transition table.

The book only tracks open quantity; an order's *state* is derived here from the
events the book emits about it. `OrderTracker` consumes event streams and raises
`IllegalTransition` the moment an event does not fit the order's state, which
makes it both the bookkeeping of a server and a conformance check on any book.

Terminal states (FILLED, CANCELED, EXPIRED, REJECTED) accept no further event.

The advanced orders add: StopTriggered (a held stop released: it stays ACCEPTED, as it
never trades while held); OrderDecremented (self-trade prevention's decrement: leaves 0
ends the order as CANCELED, more keeps its state); OrderCanceled with reason SELF_TRADE
(CANCELED, as any cancel); OrderExpired also for GTD orders, resting or held. ClockAdvanced,
PhaseChanged, AuctionUncrossed and CommandRejected concern no order.
"""

from enum import Enum

from engine.messages import (
    AuctionUncrossed,
    CancelRejected,
    ClockAdvanced,
    CommandRejected,
    OrderAccepted,
    OrderCanceled,
    OrderDecremented,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    PhaseChanged,
    ReplaceRejected,
    StopTriggered,
)


class IdentityEnum(Enum):
    """An Enum whose members hash by identity, in C: Enum's own ``__hash__`` hashes the member's
    name in Python, and the trading engine looks states and transitions up for every report.
    Members are singletons compared by identity, so equal members still hash equal."""

    __hash__ = object.__hash__


class OrderState(IdentityEnum):
    PENDING = "pending"
    """Submitted; the book has not answered yet."""
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"


class Transition(IdentityEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    FILL_PART = "fill_part"
    FILL_ALL = "fill_all"
    CANCEL = "cancel"
    EXPIRE = "expire"
    REPLACE = "replace"
    TRIGGER = "trigger"
    """A held stop released (StopTriggered)."""
    DECREMENT = "decrement"
    """Self-trade prevention shrank the order and some of it is left (OrderDecremented, leaves > 0)."""


S, T = OrderState, Transition

TRANSITIONS: dict[tuple[OrderState, Transition], OrderState] = {
    (S.PENDING, T.ACCEPT): S.ACCEPTED,
    (S.PENDING, T.REJECT): S.REJECTED,
    (S.ACCEPTED, T.FILL_PART): S.PARTIALLY_FILLED,
    (S.ACCEPTED, T.FILL_ALL): S.FILLED,
    (S.ACCEPTED, T.CANCEL): S.CANCELED,
    (S.ACCEPTED, T.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, T.REPLACE): S.ACCEPTED,
    (S.ACCEPTED, T.TRIGGER): S.ACCEPTED,
    (S.ACCEPTED, T.DECREMENT): S.ACCEPTED,
    (S.PARTIALLY_FILLED, T.FILL_PART): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.FILL_ALL): S.FILLED,
    (S.PARTIALLY_FILLED, T.CANCEL): S.CANCELED,
    (S.PARTIALLY_FILLED, T.EXPIRE): S.EXPIRED,
    (S.PARTIALLY_FILLED, T.REPLACE): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.DECREMENT): S.PARTIALLY_FILLED,
}
"""Every legal (state, transition) pair; anything absent is illegal."""

TERMINAL = frozenset({S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED})


class IllegalTransition(RuntimeError):
    """An event arrived that the order's current state does not allow."""


def next_state(state: OrderState, transition: Transition) -> OrderState:
    """Look up the state after ``transition``; raise IllegalTransition if there is none."""
    try:
        return TRANSITIONS[state, transition]
    except KeyError:
        raise IllegalTransition(f"{transition.value} is not allowed in state {state.value}") from None


class OrderTracker:
    """Follows every order's state through the events of one book.

    Orders appear when submitted (`submitted`); events for an id the tracker
    has never seen raise IllegalTransition, as do events that break the table.
    """

    def __init__(self) -> None:
        self.states: dict[int, OrderState] = {}
        self.duplicates: dict[int, int] = {}
        """Unanswered submissions that reuse the id of an accepted order."""

    def submitted(self, order_id: int) -> None:
        """Record a new order awaiting the book's answer.

        Reusing the id of an order that was accepted leaves that order alone: the
        book must answer the newcomer with an OrderRejected.
        """
        if self.states.get(order_id, S.REJECTED) is S.REJECTED:
            self.states[order_id] = S.PENDING
        else:
            self.duplicates[order_id] = self.duplicates.get(order_id, 0) + 1

    def _move(self, order_id: int, transition: Transition) -> None:
        if order_id not in self.states:
            raise IllegalTransition(f"{transition.value} for unknown order {order_id}")
        self.states[order_id] = next_state(self.states[order_id], transition)

    def apply(self, event) -> None:
        """Advance the orders that ``event`` concerns."""
        match event:
            case OrderAccepted(order_id=oid):
                self._move(oid, T.ACCEPT)
            case OrderRejected(order_id=oid) if self.duplicates.get(oid):
                self.duplicates[oid] -= 1
            case OrderRejected(order_id=oid):
                self._move(oid, T.REJECT)
            case OrderFilled(maker_id=maker, taker_id=taker, maker_leaves=ml, taker_leaves=tl):
                self._move(maker, T.FILL_ALL if ml == 0 else T.FILL_PART)
                self._move(taker, T.FILL_ALL if tl == 0 else T.FILL_PART)
            case OrderCanceled(order_id=oid):
                self._move(oid, T.CANCEL)
            case OrderExpired(order_id=oid):
                self._move(oid, T.EXPIRE)
            case OrderReplaced(order_id=oid):
                self._move(oid, T.REPLACE)
            case StopTriggered(order_id=oid):
                self._move(oid, T.TRIGGER)
            case OrderDecremented(order_id=oid, leaves=leaves):
                self._move(oid, T.DECREMENT if leaves else T.CANCEL)
            case CancelRejected() | ReplaceRejected() | CommandRejected() | ClockAdvanced() | PhaseChanged() | \
                    AuctionUncrossed():
                pass
            case _:
                raise TypeError(f"not a book event: {event!r}")

    def state(self, order_id: int) -> OrderState | None:
        return self.states.get(order_id)
