"""The call auction's uncross price: maximum volume, minimum surplus, market pressure, reference price.

For a candidate price p (every distinct limit price in the book, both sides):

- buy(p): the open quantity of the waiting buy market orders plus that of the buy limits
  priced at or above p (an iceberg's whole open quantity); sell(p) likewise with the sell
  limits priced at or below p;
- executable volume V(p) = min(buy(p), sell(p)); surplus S(p) = buy(p) - sell(p).

The uncross price is the candidate with the largest V(p) > 0; among ties, the smallest
\\|S(p)\\|; among those, when every one has S > 0 (buying pressure), the highest; when every one
has S < 0, the lowest; otherwise the one closest to the last trade price, if there is one;
then (no last trade price, or two equally close) the lowest.
"""


def uncross_price(bids, asks, market_buy: int, market_sell: int, last_price: int | None):
    """The uncross (price, volume), or None when nothing can trade.

    ``bids`` and ``asks`` are (price, open quantity) pairs of the book's levels, any order;
    ``market_buy`` / ``market_sell`` the open quantity of the waiting market orders.
    """
    bid_quantity, ask_quantity = dict(bids), dict(asks)
    prices = sorted(bid_quantity.keys() | ask_quantity.keys())
    sell, selling = [], market_sell
    for price in prices:
        selling += ask_quantity.get(price, 0)
        sell.append(selling)
    buy, buying = [0] * len(prices), market_buy
    for i in range(len(prices) - 1, -1, -1):
        buying += bid_quantity.get(prices[i], 0)
        buy[i] = buying
    volume = max((min(b, s) for b, s in zip(buy, sell, strict=True)), default=0)
    if volume <= 0:
        return None
    tied = [(price, b - s) for price, b, s in zip(prices, buy, sell, strict=True) if min(b, s) == volume]
    least = min(abs(surplus) for _, surplus in tied)
    tied = [(price, surplus) for price, surplus in tied if abs(surplus) == least]
    if all(surplus > 0 for _, surplus in tied):
        return tied[-1][0], volume
    if all(surplus < 0 for _, surplus in tied) or last_price is None:
        return tied[0][0], volume
    return min(tied, key=lambda pair: (abs(pair[0] - last_price), pair[0]))[0], volume
