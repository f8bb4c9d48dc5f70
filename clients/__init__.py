"""Client side of the exchange: the client library, the trader CLI, bots and the load generator."""
