"""The tests' own mapping from command Structs to book methods.

Written out independently of `engine.messages.dispatch` on purpose: tests compare
``book.apply(command)`` with these direct calls, which would prove nothing if both
went through the same code.
"""

from engine.messages import CancelOrder, ExpireDayOrders, ReplaceOrder, SetClock, SetPhase, SubmitOrder


def call_directly(book, command):
    """The direct method call that ``book.apply(command)`` stands for."""
    match command:
        case SubmitOrder(order_id, side, order_type, tif, price, quantity):
            return book.submit(order_id, side, order_type, tif, price, quantity, stop_price=command.stop_price,
                               display_quantity=command.display_quantity, flags=command.flags, owner=command.owner,
                               stp=command.stp, expire_at=command.expire_at)
        case CancelOrder(order_id):
            return book.cancel(order_id)
        case ReplaceOrder(order_id, price, quantity):
            return book.replace(order_id, price, quantity)
        case ExpireDayOrders():
            return book.expire_day_orders()
        case SetClock():
            return book.set_clock(command.time)
        case SetPhase():
            return book.set_phase(command.phase)
    raise TypeError(f"not a book command: {command!r}")
