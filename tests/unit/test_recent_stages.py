"""A stage's reads stand in for the publish that follows: same volume, same staging path, briefly."""

from __future__ import annotations

from csi.recent_stages import MAX_ENTRIES, RecentStages
from plugin.models import Volume


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def volume(vid: str) -> Volume:
    return Volume(id=vid, name=vid, size_bytes=1 << 26, resource_group="rg")


def test_a_publish_from_the_staging_path_gets_the_stage_reads_while_fresh() -> None:
    clock = Clock()
    recent = RecentStages(fresh_seconds=10.0, clock=clock)
    read_at = recent.now()
    clock.now += 0.5  # the reads took a while
    recent.remember("/stage/a", "pvc-1", volume("pvc-1"), "/dev/drbd1000", read_at)
    clock.now = read_at + 10.0
    assert recent.recall("/stage/a", "pvc-1") == (volume("pvc-1"), "/dev/drbd1000")
    clock.now = read_at + 10.01  # counted from before the reads, not from when they were kept
    assert recent.recall("/stage/a", "pvc-1") is None
    clock.now = read_at  # an expired entry is gone, not merely hidden
    assert recent.recall("/stage/a", "pvc-1") is None


def test_only_the_same_volume_from_the_same_staging_path() -> None:
    recent = RecentStages(clock=Clock())
    recent.remember("/stage/a", "pvc-1", volume("pvc-1"), "/dev/drbd1000", recent.now())
    assert recent.recall("/stage/a", "pvc-2") is None
    assert recent.recall("/stage/b", "pvc-1") is None
    assert recent.recall("/stage/a", "pvc-1") is not None


def test_a_new_stage_at_the_path_replaces_and_an_unstage_drops() -> None:
    recent = RecentStages(clock=Clock())
    recent.remember("/stage/a", "pvc-1", volume("pvc-1"), "/dev/drbd1000", recent.now())
    recent.remember("/stage/a", "pvc-2", volume("pvc-2"), "/dev/drbd1001", recent.now())
    assert recent.recall("/stage/a", "pvc-1") is None
    assert recent.recall("/stage/a", "pvc-2") == (volume("pvc-2"), "/dev/drbd1001")
    recent.forget("/stage/a")
    assert recent.recall("/stage/a", "pvc-2") is None
    recent.forget("/stage/a")  # forgetting twice is fine


def test_a_volume_not_attached_here_is_remembered_as_such() -> None:
    recent = RecentStages(clock=Clock())
    recent.remember("/stage/a", "pvc-1", volume("pvc-1"), None, recent.now())
    assert recent.recall("/stage/a", "pvc-1") == (volume("pvc-1"), None)


def test_the_oldest_entries_go_past_the_limit() -> None:
    recent = RecentStages(clock=Clock())
    for n in range(MAX_ENTRIES + 2):
        recent.remember(f"/stage/{n}", f"pvc-{n}", volume(f"pvc-{n}"), f"/dev/drbd{n}", recent.now())
    assert recent.recall("/stage/0", "pvc-0") is None
    assert recent.recall("/stage/1", "pvc-1") is None
    assert recent.recall("/stage/2", "pvc-2") is not None
    assert recent.recall(f"/stage/{MAX_ENTRIES + 1}", f"pvc-{MAX_ENTRIES + 1}") is not None
