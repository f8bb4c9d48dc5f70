"""The FIX 4.4 gateway (`python main.py -s FIX`): see gateways/fix/server.py."""
