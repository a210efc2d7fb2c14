import time

from traces.ids import uuid7


def test_run_ids_are_version_7_and_sort_by_creation_time():
    first = uuid7()
    time.sleep(0.002)
    later = [uuid7() for _ in range(100)]
    assert first.version == 7 and first.variant == "specified in RFC 4122"
    assert all(first < other for other in later)
    assert len(set(later)) == 100
    assert abs((first.int >> 80) - time.time_ns() // 1_000_000) < 5_000
