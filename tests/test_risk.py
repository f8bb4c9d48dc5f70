"""Pre-trade risk limits (`servers.risk`): exact thresholds and the order of the checks."""

from types import SimpleNamespace

import pytest

from engine.types import RejectReason
from servers.risk import TokenBucket, TraderRisk, valuation_price


def limits(quantity=100, notional=10_000, open_orders=3, rate=5, queries=4):
    return SimpleNamespace(max_order_quantity=quantity, max_notional=notional, max_open_orders=open_orders,
                           max_messages_per_second=rate, max_queries_per_second=queries)


def test_token_bucket_allows_a_one_second_burst_then_refuses():
    bucket = TokenBucket(3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]


def test_token_bucket_refills_at_the_rate():
    bucket = TokenBucket(3, now=0.0)
    for _ in range(3):
        bucket.take(0.0)
    assert not bucket.take(0.33)  # 0.99 tokens
    assert bucket.take(0.34)  # 1.02 tokens
    assert not bucket.take(0.34)


def test_token_bucket_never_holds_more_than_one_second_of_tokens():
    bucket = TokenBucket(3, now=0.0)
    assert sum(bucket.take(100.0) for _ in range(10)) == 3


def test_a_costly_spend_goes_through_on_one_token_and_leaves_a_debt():
    bucket = TokenBucket(4, now=0.0)
    assert bucket.spend(0.0, 10), "dearer than the whole bucket, yet possible"
    assert bucket.tokens == -6
    assert not bucket.spend(1.5, 1), "-6 + 6 tokens: still under one"
    assert bucket.spend(1.75, 1)


def test_query_pages_are_paced_by_the_query_rate():
    risk = TraderRisk(limits(queries=4), now=0.0)
    assert [risk.allow_query(0.0, pages) for pages in (1, 2, 1, 1)] == [True, True, True, False]
    assert risk.allow_message(0.0), "queries have their own bucket"
    assert not risk.allow_query(0.2, 1) and risk.allow_query(0.25, 1)


def test_token_bucket_sustains_exactly_its_rate():
    bucket = TokenBucket(100, now=0.0)
    allowed = sum(bucket.take(i / 1000) for i in range(10_000))  # 1,000 tries a second for 9.999 s
    assert allowed == 100 + 999  # the initial burst, then 100 a second


def test_order_within_every_limit_passes():
    assert TraderRisk(limits(), 0.0).check_order(price=100, quantity=100, open_orders=2) is None


@pytest.mark.parametrize(
    "price, quantity, open_orders, reason",
    [
        (1, 101, 0, RejectReason.ORDER_QUANTITY_LIMIT),
        (101, 100, 0, RejectReason.NOTIONAL_LIMIT),
        (100, 100, 3, RejectReason.OPEN_ORDERS_LIMIT),
        (1_000, 101, 3, RejectReason.ORDER_QUANTITY_LIMIT),  # the quantity limit is checked first
        (1_000, 50, 3, RejectReason.NOTIONAL_LIMIT),  # then the notional
    ],
)
def test_order_breaking_a_limit_is_refused_with_its_code(price, quantity, open_orders, reason):
    assert TraderRisk(limits(), 0.0).check_order(price, quantity, open_orders) is reason


def test_notional_limit_is_inclusive():
    risk = TraderRisk(limits(), 0.0)
    assert risk.check_order(100, 100, 0) is None  # exactly 10,000
    assert risk.check_order(10_001, 1, 0) is RejectReason.NOTIONAL_LIMIT


def test_replace_ignores_the_open_order_count():
    risk = TraderRisk(limits(), 0.0)
    assert risk.check_replace(100, 100) is None
    assert risk.check_replace(100, 101) is RejectReason.ORDER_QUANTITY_LIMIT
    assert risk.check_replace(200, 51) is RejectReason.NOTIONAL_LIMIT


def test_message_rate_is_per_trader_bucket():
    risk = TraderRisk(limits(rate=2), 0.0)
    assert [risk.allow_message(0.0) for _ in range(3)] == [True, True, False]
    assert risk.allow_message(0.5)


@pytest.mark.parametrize(
    "limit_price, is_market, last, reference, expected",
    [
        (10_050, False, 10_000, 9_000, 10_050),  # a limit order: its own price
        (0, True, 10_020, 9_000, 10_020),  # market: the last trade
        (0, True, None, 9_000, 9_000),  # market before any trade: the reference price
    ],
)
def test_valuation_price(limit_price, is_market, last, reference, expected):
    assert valuation_price(limit_price, is_market, last, reference) == expected
