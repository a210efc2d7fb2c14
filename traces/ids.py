"""Time-ordered run ids (UUIDv7, RFC 9562).

Random UUIDv4 keys land on random pages of every index that contains them, so each insert
dirties (and after a checkpoint, logs whole) pages all over the index. A v7 id starts with
the millisecond timestamp, so new runs append to the right edge like a sequence would,
while staying unguessable across workflows. Python gains uuid.uuid7 only in 3.14.
"""

import secrets
import time
import uuid


def uuid7() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)
