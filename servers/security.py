"""CURVE keys and the ZAP authenticator of the book servers.

Who authenticates whom
----------------------
Every process that talks to an OBS command port proves who it is with a CURVE key
pair (ZeroMQ's own mechanism: an encrypted, mutually authenticated connection).
The OBS runs a ZAP handler (`BookServerAuthenticator`) that admits only the keys
it knows, each under a role name that arrives with every message as its
``User-Id``:

- ``tes:<tes_id>``: the TES's key; it may say ``Hello`` as that TES and send book
  commands naming order ids with that TES's prefix (``order_id >> 48``);
- ``operator``: the operator's key (``python main.py end-of-day``); it may end the
  day, and nothing else that changes a book.

A process without one of these keys cannot complete the handshake, so nothing it
sends reaches the OBS. The TES's client port may use CURVE too
(``security.clients = "curve"``): clients then need the TES's public key, which
proves to them that they talk to the real TES and encrypts their API keys and
orders; any client key is admitted (traders still log on with their API key).

Key files
---------
``security.keys_dir`` holds one pair per role, in ZeroMQ's certificate format
(``zmq.auth.load_certificate`` reads them): ``NAME.key`` holds the public key and
may be copied anywhere, ``NAME.key_secret`` the secret key too, readable by its
owner only (mode 0600; a secret file others can read is refused). The names are
``tes``, ``obs-<shard>`` per shard and ``operator``. ``python main.py keys``
writes the missing pairs (``python main.py up`` does it too); a process needs its
own secret file and the public files of the servers it connects to.

With ``security.keys_dir = ""`` nothing is authenticated: any local process can
act as the TES. That is allowed only while every server binds loopback
(`config.settings.is_loopback`, checked when the configuration is loaded), and the
servers log a warning.
"""

import logging
import os
import stat
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import zmq
from zmq.auth import load_certificate
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from servers.service import Occurrences

log = logging.getLogger(__name__)

TES = "tes"
OPERATOR = "operator"
RECORDER = "recorder"
BOOK_DOMAIN = "obs"
"""The ZAP domain of every OBS command port: the TES's and the operator's keys."""
STREAM_DOMAIN = "stream"
"""The ZAP domain of every OBS journal stream port: the TES's, the recorder's and the operator's keys."""
HANDSHAKE_MS = 5_000
"""A connection to a server's bound socket that has not finished ZeroMQ's handshake (CURVE's
with it) this long after it was accepted is closed (``ZMQ_HANDSHAKE_IVL``; libzmq's default is
30 s): a connection that never speaks, or speaks no ZeroMQ, holds a descriptor this long at most.
A handshake takes a few round trips, milliseconds even across a continent."""
PEER_MISSES = 3
"""A connection that answers none of this many of ZeroMQ's heartbeats in a row is closed (`heartbeat`)."""
SECRET_SUFFIX = ".key_secret"
PUBLIC_SUFFIX = ".key"


def heartbeat(socket: zmq.Socket, interval_ms: int) -> None:
    """Ping ``socket``'s peers every ``interval_ms`` with ZeroMQ's own heartbeat (a peer's ZeroMQ
    answers from its I/O thread, whatever its program is doing) and close a connection over which
    nothing came for PEER_MISSES of them: a peer gone without closing its connection (stopped, or
    its host lost: TCP says nothing of a peer that sends nothing) is then a disconnection like any
    other. An ``interval_ms`` of 0 turns the heartbeat off. Set before the socket connects or binds."""
    socket.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, PEER_MISSES * interval_ms)


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed or too widely readable (the message says which)."""


class KeyPair(NamedTuple):
    public: bytes
    """Z85-encoded (40 characters), as ZeroMQ's socket options take it."""
    secret: bytes


def shard_key_name(shard_name: str) -> str:
    return f"obs-{shard_name}"


def role_names(shard_names: Iterable[str]) -> list[str]:
    """Every key pair a configuration needs: the TES, each shard, the operator and the recorder."""
    return [TES, *(shard_key_name(name) for name in shard_names), OPERATOR, RECORDER]


def write_missing_keys(config, replace: bool = False) -> list[str]:
    """Write the key pairs ``config`` (a `config.settings.Config` with CURVE on) needs and
    lacks (all of them if ``replace``); the names written."""
    return Keys(config.security.keys_dir).generate(role_names(s.name for s in config.shards), replace)


# ================================================================ key files


class Keys:
    """The key files of one ``security.keys_dir``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def own(self, name: str) -> KeyPair:
        """This process's key pair ``name``; refused if the secret file is readable by others."""
        path = self.directory / f"{name}{SECRET_SUFFIX}"
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise KeyFileError(f"no key pair {name!r} in {self.directory} (python main.py keys writes it)") from None
        except OSError as exc:
            raise KeyFileError(f"cannot read {path}: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}): chmod 600 it")
        public, secret = self._load(path)
        if secret is None:
            raise KeyFileError(f"{path} holds no secret key")
        return KeyPair(public, secret)

    def public(self, name: str) -> bytes:
        """The public key ``name`` (of a server this process connects to, or a peer it admits)."""
        path = self.directory / f"{name}{PUBLIC_SUFFIX}"
        if not path.exists():
            raise KeyFileError(f"no public key {name!r} in {self.directory} (python main.py keys writes it)")
        return self._load(path)[0]

    @staticmethod
    def _load(path: Path) -> tuple[bytes, bytes | None]:
        try:
            public, secret = load_certificate(path)
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc}") from None
        for key in (public, secret):
            if key is not None and len(key) != 40:
                raise KeyFileError(f"key file {path} holds a key that is not 40 Z85 characters")
        return public, secret

    def generate(self, names: Iterable[str], replace: bool = False) -> list[str]:
        """Write a new pair for each name that has none (every name if ``replace``); the names written.

        The directory is created mode 0700, secret files are created 0600 (never
        readable by others, even for an instant) and public files 0644.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        written = []
        for name in names:
            secret_path = self.directory / f"{name}{SECRET_SUFFIX}"
            if secret_path.exists() and not replace:
                continue
            public, secret = zmq.curve_keypair()
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            _write(secret_path, _certificate(stamp, "Secret", public, secret), 0o600)
            _write(self.directory / f"{name}{PUBLIC_SUFFIX}", _certificate(stamp, "Public", public), 0o644)
            written.append(name)
        return written


def _certificate(stamp: str, kind: str, public: bytes, secret: bytes | None = None) -> str:
    """A ZeroMQ (czmq ZPL) certificate, as ``zmq.auth.create_certificates`` writes it."""
    lines = [
        f"#   ****  Generated on {stamp} by python main.py keys  ****",
        f"#   ZeroMQ CURVE {kind} Certificate",
        "",
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


# ================================================================ sockets


def serve_curve(socket: zmq.Socket, own: KeyPair, domain: str | None = None) -> None:
    """Make ``socket`` (before it binds) a CURVE server with key pair ``own``; with a
    ``domain``, its peers are checked by the ZAP handler of that domain."""
    socket.curve_secretkey = own.secret
    socket.curve_publickey = own.public
    socket.curve_server = True
    if domain is not None:
        socket.zap_domain = domain.encode()


def connect_curve(socket: zmq.Socket, own: KeyPair, server: bytes) -> None:
    """Make ``socket`` (before it connects) a CURVE client of the server whose public key is ``server``."""
    socket.curve_secretkey = own.secret
    socket.curve_publickey = own.public
    socket.curve_serverkey = server


class BookServerAuthenticator(ThreadAuthenticator):
    """The OBS's ZAP handler: admits exactly the keys ``admitted`` names for each ZAP domain,
    each as its role name.

    ``roles`` maps a Z85 public key to the role name every message from that peer carries
    as ``User-Id``; ``admitted`` a domain to the keys it admits. Runs on its own thread;
    handshakes are rare.
    """

    def __init__(self, context: zmq.Context, roles: dict[bytes, str], admitted: dict[str, set[bytes]]) -> None:
        super().__init__(context, log=logging.getLogger(f"{__name__}.zap"))
        self.peers = dict(roles)
        self.admitted = {domain: set(keys) for domain, keys in admitted.items()}
        self.refused = Occurrences(log, "refused a connection to %s with an unknown CURVE key %s (%d refused so far)")

    def start(self) -> None:
        super().start()
        for domain in self.admitted:
            self.configure_curve_callback(domain, self)

    def callback(self, domain: str, key: bytes) -> bool:
        """The credentials-provider hook: is this Z85 public key admitted to ``domain``?"""
        admitted = key in self.admitted.get(domain, ())
        if not admitted:
            self.refused(domain, key.decode(errors="replace"))
        return admitted

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self.peers[z85.encode(client_public_key)]


class Peer(NamedTuple):
    """What one peer of an OBS command port may do."""

    tes_id: int | None
    """The TES whose order ids it may name and as which it may say Hello; None: any (CURVE off), -1: none."""
    operator: bool
    """It may end the day."""

    def may_name(self, order_id: int) -> bool:
        return self.tes_id is None or (self.tes_id > 0 and order_id >> 48 == self.tes_id)


ANYONE = Peer(None, True)
"""Every peer when CURVE is off."""
NOBODY = Peer(-1, False)
"""A peer whose role this OBS does not know (cannot happen with the ZAP handler above)."""


def book_server_peers(keys: Keys, tes_id: int) -> tuple[dict[bytes, str], dict[str, set[bytes]], dict[str, Peer]]:
    """What an OBS's ZAP handler needs: the keys it knows with their role names, the keys
    each port (domain) admits, and what each role may do on the command port."""
    tes, operator, recorder = keys.public(TES), keys.public(OPERATOR), keys.public(RECORDER)
    tes_role = f"{TES}:{tes_id}"
    return (
        {tes: tes_role, operator: OPERATOR, recorder: RECORDER},
        {BOOK_DOMAIN: {tes, operator}, STREAM_DOMAIN: {tes, operator, recorder}},
        {tes_role: Peer(tes_id, False), OPERATOR: Peer(-1, True)},
    )
