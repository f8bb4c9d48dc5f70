"""``python main.py -s API``: the REST and WebSocket gateway, served by uvicorn in this process.

The listening socket is bound before READY (a port in use: one line, exit 1); uvicorn serves the
FastAPI app of `gateways.api.app` on it with the signal handling of `servers.service` (uvicorn's
own is turned off: SIGINT/SIGTERM set ``should_exit``, uvicorn finishes the requests in flight
and closes the WebSockets, every trader's TES session is logged out, and the process exits 0).
"""

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

import uvicorn

from clients.runtime import UsageError, tes_server_key
from config.settings import Config
from gateways.api.app import Gateway, build_app
from gateways.api.auth import load_secrets
from gateways.api.streams import Streams
from servers import security, service

log = logging.getLogger("api")

SHUTDOWN_GRACE_S = 3
SEND_BUFFER_BYTES = 256 * 1024
"""The kernel's send buffer of every connection (inherited from the listening socket; Linux doubles
it). Fixed rather than autotuned (up to ``net.ipv4.tcp_wmem``'s maximum, 4 MB and more): it bounds
the kernel memory a client that stops reading holds, and how much is sent to it before its
WebSocket counts as a slow consumer."""


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the signals to `servers.service`."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


class ApiGateway:
    """The REST gateway role (`servers.service.Server`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.api = api = config.api
        if not api.keys:
            raise UsageError("api.keys is empty: the gateway would have nobody to serve")
        for path in (api.tls_cert, api.tls_key):
            if path and not Path(path).is_file():
                raise UsageError(f"api TLS file {path} does not exist")
        secrets_by_key = load_secrets(api)
        server_key = tes_server_key(config) if config.security.clients == "curve" else None
        self.gateway = Gateway(config, secrets_by_key, server_key)
        self.streams = Streams(self.gateway)
        self.app = build_app(self.gateway, self.streams)
        self.streams.mount(self.app)
        self.listener = socket.create_server((api.address, api.port), backlog=512)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self.listener.setblocking(False)
        options = {"ssl_certfile": api.tls_cert, "ssl_keyfile": api.tls_key} if api.tls_cert else {}
        self.server = QuietServer(uvicorn.Config(
            # proxy_headers off: the public rate limit is per client address, which a client must not
            # choose (with them on, any local client could name its own in X-Forwarded-For)
            self.app, log_config=None, access_log=False, proxy_headers=False,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S, ws_max_size=api.max_body_bytes,
            limit_concurrency=api.max_connections + 1, **options))  # uvicorn counts the one it refuses

    def ready(self) -> str:
        scheme = "https" if self.api.tls_cert else "http"
        return (f"READY API gateway on {scheme}://{self.api.address}:{self.api.port} (docs at /docs, OpenAPI at "
                f"/openapi.json); keys {', '.join(k.key_id for k in self.api.keys)}")

    def run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.listener]))

    def stop(self, *_signal) -> None:
        self.server.should_exit = True

    def close(self) -> None:
        self.streams.close()
        self.gateway.close()
        self.listener.close()

    def stopped(self) -> str:
        return f"API gateway stopped: {len(self.gateway.sessions)} trader sessions served"


def serve(config: Config, args=None) -> int:
    """``python main.py -s API``: run until SIGINT/SIGTERM; the exit status (`servers.service.serve`)."""
    return service.serve(log, "API", lambda: ApiGateway(config),
                         {security.KeyFileError: 2, UsageError: 2, ValueError: 2, OSError: 1},
                         log_format=config.logging.format)
