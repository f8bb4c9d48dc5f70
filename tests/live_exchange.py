"""A whole exchange (OBS, recorder, TES) in real processes, for the tests of the web apps.

`LiveExchange` starts the processes of `servers.processes` on free loopback ports with every
file under one directory; the apps under test read the same configuration from the process
environment (`environ`), as ``python main.py --frontend ...`` does. One is shared by a test
module (the ``live_exchange`` fixture of ``conftest.py``): starting it takes seconds.
"""

import json
import os
import time
from pathlib import Path

from clients.client import ExchangeClient
from config.settings import Config, load_config
from servers.journal import read_records
from servers.processes import Role, endpoint, exchange_env


class LiveExchange:
    """OBS (shard A: ACME, BOLT), recorder and TES of the default configuration's traders
    (API keys ``<trader_id>-demo-key``), isolated in ``root``."""

    def __init__(self, root: Path, **overrides: str) -> None:
        self.root = root
        self.env = exchange_env(root, **overrides)
        self.config: Config = load_config(environ=self.env)
        self._clients: list[ExchangeClient] = []
        self.obs = self.recorder = self.tes = None
        try:
            self.obs = Role(["-s", "OBS"], self.env)
            self.recorder = Role(["-s", "recorder"], self.env)
            self.tes = Role(["-s", "TES"], self.env)
            self.tes.wait_for("shard A ready", 10)
        except BaseException:
            self.close()
            raise

    @property
    def environ(self) -> dict[str, str]:
        """The ``EXCHANGE*`` variables that point a process's configuration at this exchange."""
        return {name: value for name, value in self.env.items() if name.startswith("EXCHANGE")}

    def client(self, trader_id: str) -> ExchangeClient:
        """A logged-on session of ``trader_id``, closed with the exchange."""
        client = ExchangeClient(endpoint(self.env, "TES__CLIENT_ENDPOINT"), trader_id, f"{trader_id}-demo-key")
        client.logon()
        self._clients.append(client)
        return client

    def recorded(self, timeout: float = 30.0) -> None:
        """Wait until the recorder holds everything shard A journaled (database and tick store)."""
        journal = Path(self.env["EXCHANGE__SHARDS__0__JOURNAL_DIR"])
        status = Path(self.env["EXCHANGE__RECORDER__STATUS_FILE"])
        last = len(list(read_records(journal)))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                shard = json.loads(status.read_text()).get("A", {})
            except (OSError, ValueError):
                shard = {}
            if shard.get("committed") == last and shard.get("pending") == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"the recorder did not reach sequence {last} within {timeout}s")

    def close(self) -> None:
        for client in self._clients:
            client.close()
        for role in (self.tes, self.recorder, self.obs):
            if role is not None and role.process.poll() is None:
                role.stop()


def use_environment(monkeypatch, exchange: LiveExchange) -> None:
    """Point this process's configuration (``load_config()``) at ``exchange``."""
    for name in [name for name in os.environ if name.startswith("EXCHANGE")]:
        monkeypatch.delenv(name)
    for name, value in exchange.environ.items():
        monkeypatch.setenv(name, value)
