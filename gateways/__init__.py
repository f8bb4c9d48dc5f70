"""Gateways: other protocols into the exchange, each a client of the TES like any other."""
