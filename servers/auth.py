"""API keys: stored only as salted PBKDF2-HMAC-SHA256 hashes, compared in constant time.

A stored hash reads ``pbkdf2_sha256$ITERATIONS$SALT_HEX$DIGEST_HEX``; `hash_api_key`
makes one (``python main.py hash-key``), `verify_api_key` checks a key against it.
"""

import hashlib
import hmac
import os

SCHEME = "pbkdf2_sha256"
ITERATIONS = 100_000


def hash_api_key(api_key: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", api_key.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    """Split a stored hash; raise ValueError naming what is wrong with it."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != SCHEME:
        raise ValueError(f"expected {SCHEME}$ITERATIONS$SALT$DIGEST")
    try:
        iterations, salt, digest = int(parts[1]), bytes.fromhex(parts[2]), bytes.fromhex(parts[3])
    except ValueError:
        raise ValueError("iterations must be an integer and salt/digest hexadecimal") from None
    if iterations < 1 or len(salt) < 8 or len(digest) != 32:
        raise ValueError("iterations >= 1, a salt of 8+ bytes and a 32-byte digest are required")
    return iterations, salt, digest


def verify_api_key(api_key: str, stored: str) -> bool:
    iterations, salt, digest = parse_hash(stored)
    candidate = hashlib.pbkdf2_hmac("sha256", api_key.encode(), salt, iterations)
    return hmac.compare_digest(candidate, digest)
