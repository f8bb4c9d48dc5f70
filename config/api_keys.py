"""The stored form of an API key, as the configuration and the database hold it.

A stored hash reads ``pbkdf2_sha256$ITERATIONS$SALT_HEX$DIGEST_HEX`` (salted
PBKDF2-HMAC-SHA256). `parse_hash` reads one and says what is wrong with a bad one,
so that the configuration can be validated without the servers; `servers.auth`
makes them and checks a key against them.
"""

SCHEME = "pbkdf2_sha256"


def parse_hash(stored: str) -> tuple[int, bytes, bytes]:
    """Split a stored hash into iterations, salt and digest; raise ValueError naming what is wrong with it."""
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
