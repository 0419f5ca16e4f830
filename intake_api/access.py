"""The complainant's access code: random, unambiguous when read aloud or copied, kept hashed."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# No 0/O, 1/I/L: a code is often read over the phone or copied from paper.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GROUPS, GROUP_LENGTH = 3, 4  # 12 characters, about 59 bits
MAX_INPUT_LENGTH = 64


def new_code() -> str:
    # One draw among all codes, read as digits in base len(ALPHABET): as uniform as a draw per
    # character, for one read of the system's randomness instead of twelve.
    draw = secrets.randbelow(len(ALPHABET) ** (GROUPS * GROUP_LENGTH))
    characters = []
    for _ in range(GROUPS * GROUP_LENGTH):
        draw, digit = divmod(draw, len(ALPHABET))
        characters.append(ALPHABET[digit])
    return "-".join("".join(characters[i:i + GROUP_LENGTH])
                    for i in range(0, GROUPS * GROUP_LENGTH, GROUP_LENGTH))


_IGNORED = str.maketrans("", "", " -\t")


def normalize(code: str) -> str:
    """What the complainant typed, without case, spaces or dashes."""
    return code.upper().translate(_IGNORED)


def hash_code(tracking_number: str, code: str) -> str:
    # Salted with the tracking number, so equal codes of two complaints hash differently. The
    # statement recording a complaint hashes its code alike, as it draws the number
    # (``repository.record_complaints``).
    return hashlib.sha256(f"{tracking_number}:{normalize(code)}".encode()).hexdigest()


# Compared against when the tracking number is unknown, so that both misses cost the same.
_NO_COMPLAINT = hash_code("", "")


def matches(tracking_number: str, code: str, stored_hash: str | None) -> bool:
    presented = hash_code(tracking_number, code)
    return hmac.compare_digest(presented, stored_hash or _NO_COMPLAINT) and stored_hash is not None
