"""Durations as the deadline's reason, the settings page and the queue say them."""

import pytest

from ladder.durations import duration_text, time_left_text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (60, "1 min"),
        (3600, "1 h"),
        (5400, "1 h 30 min"),
        (72 * 3600, "3 days"),
        (86400, "1 day"),
        (30 * 86400, "30 days"),
        (90061, "1 day 1 h 1 min 1 s"),
        (45, "45 s"),
        (0, "0 s"),
    ],
)
def test_duration_text_names_every_unit_exactly(seconds, text):
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (2 * 3600 + 10 * 60 + 59.9, "2 h 10 min left"),
        (3 * 86400 + 4 * 3600 + 59 * 60, "3 days 4 h left"),
        (45 * 60, "45 min left"),
        (59.5, "under a minute left"),
        (0, "overdue"),
        (-3600, "overdue"),
    ],
)
def test_time_left_is_floored_to_the_minute_in_two_units_at_most(seconds, text):
    assert time_left_text(seconds) == text
