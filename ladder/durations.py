"""Durations as people read them: "3 days", "1 h 30 min", "2 h 10 min left".

Plain functions over seconds, so the deadline's reason in a run's trace, the settings form
and the queue page all say the same thing the same way.
"""

_UNITS = ((86400, "day", "days"), (3600, "h", "h"), (60, "min", "min"), (1, "s", "s"))


def _parts(seconds: int) -> list[str]:
    parts = []
    for size, one, many in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    return parts


def duration_text(seconds: int) -> str:
    """Every non-zero unit, exactly: 259200 → "3 days", 5400 → "1 h 30 min"."""
    return " ".join(_parts(max(0, int(seconds)))) or "0 s"


def time_left_text(seconds: float) -> str:
    """What a waiting run has left, to the minute, in at most two units: "2 h 10 min
    left", "3 days 4 h left"; "overdue" once the deadline has passed."""
    if seconds <= 0:
        return "overdue"
    if seconds < 60:
        return "under a minute left"
    return " ".join(_parts(int(seconds) // 60 * 60)[:2]) + " left"
