"""The REST and WebSocket gateway (``python main.py -s API``): a client of the TES, like the FIX gateway."""
