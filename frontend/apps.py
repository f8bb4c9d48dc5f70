"""Serving the web apps: ``python main.py --frontend trader|analytics``.

Each app is a Streamlit script of this package run by ``streamlit run`` in a child process,
configured from ``[frontend]`` (address, port, TLS) with Streamlit's own options on its command
line, so no ``.streamlit/config.toml`` is needed or read from the user's directory. The runner

- refuses to start, with one line and exit status 1, when the port is taken;
- waits for the app's health endpoint (``/_stcore/health``) to answer ``ok``, then prints
  ``READY <app> <url>`` (the launcher of ``python main.py up`` waits for that line);
- relays the child's output, and on SIGINT or SIGTERM stops it (SIGTERM, then SIGKILL after
  `STOP_WAIT_S`); exit status 0 after a stop it was asked for, 1 if the app died on its own.
  The kernel ends the child if the runner dies (``kill -9``), so no Streamlit server is left behind.
"""

import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from config.settings import Config
from servers.children import die_with_parent

HERE = Path(__file__).resolve().parent
START_TIMEOUT_S = 60.0
STOP_WAIT_S = 10.0
POLL_S = 0.2


class App(NamedTuple):
    title: str
    script: Path
    port_key: str
    """The ``[frontend]`` key of its port."""


APPS = {
    "trader": App("trader portal", HERE / "trader_app.py", "trader_port"),
    "analytics": App("analytics dashboard", HERE / "analytics_app.py", "analytics_port"),
}


def url(config: Config, name: str) -> str:
    """Where app ``name`` answers (on this host)."""
    frontend = config.frontend
    scheme = "https" if frontend.tls_cert else "http"
    host = frontend.address if frontend.address not in ("0.0.0.0", "::") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{getattr(frontend, APPS[name].port_key)}"


def command(config: Config, name: str) -> list[str]:
    """The ``streamlit run`` command line of app ``name``."""
    frontend = config.frontend
    options = {
        "server.address": frontend.address,
        "server.port": getattr(frontend, APPS[name].port_key),
        "server.headless": "true",
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "server.disconnectedSessionTTL": max(1, round(frontend.session_grace_s)),
        "browser.gatherUsageStats": "false",
        "client.toolbarMode": "viewer",
        "client.showErrorDetails": "none",
        "runner.magicEnabled": "false",
        "logger.level": "warning",
        "logger.hideWelcomeMessage": "true",
        "theme.base": "light",
    }
    if frontend.tls_cert:
        options |= {"server.sslCertFile": frontend.tls_cert, "server.sslKeyFile": frontend.tls_key}
    return [sys.executable, "-m", "streamlit", "run", str(APPS[name].script),
            *(f"--{key}={value}" for key, value in options.items())]


def serve(config: Config, name: str) -> int:
    """Run app ``name`` until SIGINT/SIGTERM; the exit status (see the module docstring)."""
    app = APPS[name]
    frontend = config.frontend
    port = getattr(frontend, app.port_key)
    taken = _port_taken(frontend.address, port)
    if taken:
        print(f"error: the {app.title} cannot start: {frontend.address}:{port} (frontend.{app.port_key}) "
              f"is not available: {taken}", flush=True)
        return 1
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    child = subprocess.Popen(command(config, name), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, process_group=0,
                             preexec_fn=die_with_parent(os.getpid()))
    relay = threading.Thread(target=_relay, args=(child,), daemon=True)
    relay.start()
    try:
        if not _wait_healthy(child, url(config, name), stop):
            if stop.is_set():
                return 0
            print(f"error: the {app.title} did not come up (status {child.poll()})", flush=True)
            return 1
        print(f"READY {app.title} {url(config, name)}", flush=True)
        while not stop.wait(POLL_S):
            if child.poll() is not None:
                print(f"error: the {app.title} stopped on its own with status {child.returncode}", flush=True)
                return 1
        return 0
    finally:
        _stop(child)
        relay.join(2.0)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _port_taken(address: str, port: int) -> str:
    """Why ``address:port`` cannot be listened on ("" if it can)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return ""


def _wait_healthy(child: subprocess.Popen, base: str, stop: threading.Event) -> bool:
    """Until the app's health endpoint says ok (True), or the child exits, ``stop`` is set or
    `START_TIMEOUT_S` passes (False)."""
    context = ssl._create_unverified_context() if base.startswith("https") else None  # our own certificate
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and child.poll() is None and not stop.is_set():
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2, context=context) as answer:
                if answer.read().strip() == b"ok":
                    return True
        except (urllib.error.URLError, OSError):
            pass
        stop.wait(POLL_S)
    return False


def _relay(child: subprocess.Popen) -> None:
    for line in child.stdout:
        print(line.rstrip("\n"), flush=True)


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
