"""Request signing, replay protection and rate limits of the REST gateway (no web framework here).

A client signs every private request with its key's secret, the convention of the large crypto
venues (Binance, Bybit, OKX, Coinbase)::

    payload   = timestamp + METHOD + path_with_query + body      (text, concatenated)
    signature = hex(HMAC-SHA256(secret, payload))

and sends ``X-API-KEY`` (the key id), ``X-API-TIMESTAMP`` (milliseconds since the epoch) and
``X-API-SIGNATURE``. The secret never crosses the wire; a request is refused when its timestamp
is further than ``recv_window_ms`` from the gateway's clock (expired or from the future), when its
signature is wrong, or when the same signature was already seen inside the window (a replay: the
signature is the nonce; two legitimate identical requests in the same millisecond must differ by
their timestamp).
"""

import hashlib
import hmac
import math
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

from config.settings import ApiConfig, ApiKeyConfig
from engine.types import RejectReason

SECRET_BYTES = 32


def signature(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp + method + path + body`` under ``secret``."""
    payload = timestamp.encode() + method.upper().encode() + path.encode() + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def load_secrets(api: ApiConfig) -> dict[str, str]:
    """key_id -> secret, from ``<secrets_dir>/<key_id>.secret``; a missing file is made (0600)
    with a fresh random secret (hex), for the key's owner to copy to the client (`_make_secret`:
    whole or not at all)."""
    directory = Path(api.secrets_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    found: dict[str, str] = {}
    for key in api.keys:
        path = directory / f"{key.key_id}.secret"
        if not path.exists():
            _make_secret(path)
        secret = path.read_text().strip()
        if len(secret) < 16:
            raise ValueError(f"{path}: the secret is shorter than 16 characters")
        found[key.key_id] = secret
    return found


def _make_secret(path: Path) -> None:
    """Write a fresh secret to ``path``, readable by this user only, whole or not at all: into a
    file of its own, made durable, then linked at ``path`` (refused if ``path`` exists meanwhile).
    A write that fails (a full disk) leaves nothing at ``path``, so the next start makes it again;
    OSError says why."""
    temporary = path.with_name(f".{path.name}.new")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(SECRET_BYTES) + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class AuthError(Exception):
    """A request that does not authenticate: ``code`` is the exchange's reject code, ``title`` short."""

    def __init__(self, title: str, detail: str, code: int = RejectReason.BAD_CREDENTIALS) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail
        self.code = code


class Authenticator:
    """Checks signed requests against the configured keys (thread-safe)."""

    def __init__(self, api: ApiConfig, secrets_by_key: dict[str, str], clock=time.time) -> None:
        self.window_ms = api.recv_window_ms
        self.keys: dict[str, ApiKeyConfig] = {key.key_id: key for key in api.keys}
        self._secrets = secrets_by_key
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        """Signatures accepted within the window, oldest first (value: when they expire)."""
        self._lock = threading.Lock()

    def check(self, key_id: str | None, timestamp: str | None, signed: str | None, method: str, path: str,
              body: bytes) -> ApiKeyConfig:
        """The key of a correctly signed, fresh, first-seen request; else `AuthError`."""
        if not key_id or not timestamp or not signed:
            raise AuthError("Not signed", "a private request needs the headers X-API-KEY, X-API-TIMESTAMP and "
                            "X-API-SIGNATURE (see the README)", RejectReason.NOT_LOGGED_ON)
        key = self.keys.get(key_id)
        if key is None:
            raise AuthError("Bad credentials", "unknown API key id")
        if not timestamp.isdigit() or len(timestamp) > 16:
            raise AuthError("Bad timestamp", "X-API-TIMESTAMP must be milliseconds since the epoch",
                            RejectReason.MALFORMED_MESSAGE)
        now_ms = self._clock() * 1000
        skew = now_ms - int(timestamp)
        if abs(skew) > self.window_ms:
            when = "expired" if skew > 0 else "ahead of the gateway's clock"
            raise AuthError("Timestamp outside the receive window",
                            f"the timestamp is {when} by {abs(skew) / 1000:.1f}s (the window is "
                            f"{self.window_ms / 1000:g}s)")
        expected = signature(self._secrets[key_id], timestamp, method, path, body)
        if not hmac.compare_digest(expected, signed.lower()):
            raise AuthError("Bad signature", "X-API-SIGNATURE is not the HMAC-SHA256 of timestamp + method + "
                            "path + body under this key's secret")
        with self._lock:
            now = now_ms / 1000
            while self._seen and next(iter(self._seen.values())) < now:
                self._seen.popitem(last=False)
            if expected in self._seen:
                raise AuthError("Replayed request", "this signature was already used (a reused nonce): sign "
                                "each request with a new timestamp")
            self._seen[expected] = now + 2 * self.window_ms / 1000
        return key


class RateLimiter:
    """A token bucket per key: ``rate`` a second, at most ``burst`` saved (thread-safe).

    With ``max_keys`` the table is bounded (keys are client addresses, which anyone can vary): a new
    key beyond it evicts the one used least recently, which starts again with a full bucket if it
    comes back.
    """

    def __init__(self, rate: float, burst: int, clock=time.monotonic, max_keys: int | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """key -> (tokens, when counted), least recently used first."""
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 if ``key`` may make a request now (one token taken), else the seconds until it may."""
        with self._lock:
            now = self._clock()
            buckets = self._buckets
            found = buckets.get(key)
            if found is None:
                tokens = float(self.burst)
                if self.max_keys is not None and len(buckets) >= self.max_keys:
                    buckets.popitem(last=False)
            else:
                tokens = min(float(self.burst), found[0] + (now - found[1]) * self.rate)
                buckets.move_to_end(key)
            if tokens >= 1.0:
                buckets[key] = (tokens - 1.0, now)
                return 0.0
            buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(seconds: float) -> str:
    """The Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
