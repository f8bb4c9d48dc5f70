"""API keys: stored only as salted PBKDF2-HMAC-SHA256 hashes, compared in constant time.

The stored form, ``pbkdf2_sha256$ITERATIONS$SALT_HEX$DIGEST_HEX``, is read by
`config.api_keys.parse_hash` (the configuration validates it without the servers);
`hash_api_key` makes one (``python main.py hash-key``), `verify_api_key` checks a
key against it.
"""

import hashlib
import hmac
import os

from config.api_keys import SCHEME, parse_hash

ITERATIONS = 100_000


def hash_api_key(api_key: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", api_key.encode(), salt, iterations)
    return f"{SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def verify_api_key(api_key: str, stored: str) -> bool:
    iterations, salt, digest = parse_hash(stored)
    candidate = hashlib.pbkdf2_hmac("sha256", api_key.encode(), salt, iterations)
    return hmac.compare_digest(candidate, digest)
