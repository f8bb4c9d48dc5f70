"""Real exchange processes for tests: see `servers.processes`."""

from servers.processes import REPO, Role, endpoint, exchange_env, free_port

__all__ = ["REPO", "Role", "endpoint", "exchange_env", "free_port"]
