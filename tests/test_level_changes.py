"""``book.level_changes()``: the levels each command changed, as it left them, in the order it first
touched them (`engine.messages`), in both books. (Every scenario test also checks, through the
``book`` fixture's harness, that they are exactly the levels whose state changed.)"""

from engine.messages import LevelChanged
from engine.types import OrderType, Side, TimeInForce

BUY, SELL = Side.BUY, Side.SELL
DAY = TimeInForce.DAY


def test_an_order_that_rests_changes_its_own_level(book):
    book.buy(1, 100, 10)
    assert book.level_changes() == [LevelChanged(BUY, 100, 10, 1)]
    book.buy(2, 100, 5)
    assert book.level_changes() == [LevelChanged(BUY, 100, 15, 2)]


def test_a_sweep_changes_the_makers_levels_best_first_then_its_own(book):
    book.sell(1, 101, 5)
    book.sell(2, 102, 5)
    book.sell(3, 103, 5)
    book.buy(4, 102, 12)  # takes 101 and 102, rests 2 at 102
    assert book.level_changes() == [LevelChanged(SELL, 101, 0, 0), LevelChanged(SELL, 102, 0, 0),
                                    LevelChanged(BUY, 102, 2, 1)]


def test_a_partial_fill_leaves_the_makers_level_reduced(book):
    book.sell(1, 101, 5)
    book.sell(2, 101, 5)
    book.submit(3, BUY, OrderType.MARKET, TimeInForce.IOC, 0, 7)
    assert book.level_changes() == [LevelChanged(SELL, 101, 3, 1)]


def test_cancel_and_replace_in_place(book):
    book.buy(1, 100, 10)
    book.buy(2, 100, 4)
    book.replace(1, 100, 6)
    assert book.level_changes() == [LevelChanged(BUY, 100, 10, 2)]
    book.cancel(2)
    assert book.level_changes() == [LevelChanged(BUY, 100, 6, 1)]


def test_a_replace_that_moves_and_crosses_changes_old_level_makers_then_new_level(book):
    book.sell(1, 105, 3)
    book.buy(2, 100, 10)
    book.replace(2, 106, 10)
    assert book.level_changes() == [LevelChanged(BUY, 100, 0, 0), LevelChanged(SELL, 105, 0, 0),
                                    LevelChanged(BUY, 106, 7, 1)]


def test_a_replace_to_the_same_price_and_quantity_changes_no_level(book):
    book.buy(1, 100, 10)
    book.replace(1, 100, 10)
    assert book.level_changes() == []


def test_rejected_commands_change_nothing(book):
    book.buy(1, 100, 10)
    book.buy(1, 99, 10)  # duplicate id
    assert book.level_changes() == []
    book.cancel(42)
    assert book.level_changes() == []
    book.replace(42, 100, 1)
    assert book.level_changes() == []


def test_end_of_day_changes_the_levels_of_the_day_orders(book):
    book.buy(1, 100, 10, DAY)
    book.buy(2, 100, 5)
    book.sell(3, 105, 5, DAY)
    book.expire_day_orders()
    assert book.level_changes() == [LevelChanged(BUY, 100, 5, 1), LevelChanged(SELL, 105, 0, 0)]


def test_a_restored_book_has_no_changes_until_a_command(book):
    book.buy(1, 100, 10)
    restored = book.restored()
    assert restored.level_changes() == []
