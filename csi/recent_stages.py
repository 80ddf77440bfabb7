"""What NodeStageVolume just read of a volume, for the NodePublishVolume that follows it.

Kubelet and Nomad publish a volume right after they stage it, and NodePublishVolume needs
what NodeStageVolume has just read from LINSTOR: the volume's record (for its IO limits)
and its device on this node (to check that the staging mount is the volume's own). So a
stage remembers both, keyed by its staging path, and a publish from that staging path
within :data:`FRESH_SECONDS` uses them instead of asking LINSTOR again. A pod's start
then costs two REST calls on the node, made at once, instead of three.

An entry is only ever the answer LINSTOR gave a few seconds earlier for the same volume
and staging path, so it says no more than a read made then would: a volume in use at a
staging mount can be neither deleted nor moved to another device (DRBD refuses to detach
it). The publish still checks the staging mount against the remembered device, and a
mount that does not match is judged on a fresh read. A stage at the same path, an
unstage, or a failed stage replaces or drops the entry; a later publish (another pod, a
retry after the window) reads LINSTOR as before, so limits changed by
ControllerModifyVolume hold from then on. Nothing is kept across a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from plugin.models import Volume

#: How long a stage's reads stand in for a publish's: the CO's stage-then-publish of one pod.
FRESH_SECONDS = 10.0
#: Entries kept at most; the oldest go first (a node stages far fewer volumes at once).
MAX_ENTRIES = 1024


@dataclass(frozen=True)
class StageReads:
    """LINSTOR's answers for one volume, read by the stage at one staging path."""

    volume_id: str
    volume: Volume
    device: str | None
    read_at: float


class RecentStages:
    """Stage reads by staging path, each usable for :data:`FRESH_SECONDS`."""

    def __init__(
        self, fresh_seconds: float = FRESH_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fresh = fresh_seconds
        self._clock = clock
        self._entries: dict[str, StageReads] = {}
        self._lock = threading.Lock()

    def remember(
        self, staging: str, volume_id: str, volume: Volume, device: str | None, read_at: float
    ) -> None:
        """Keep what a successful stage at ``staging`` read at ``read_at`` (a :meth:`now` reading)."""
        with self._lock:
            self._entries.pop(staging, None)
            self._entries[staging] = StageReads(volume_id, volume, device, read_at)
            while len(self._entries) > MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]

    def recall(self, staging: str, volume_id: str) -> tuple[Volume, str | None] | None:
        """The stage's reads of ``volume_id`` at ``staging`` while still fresh; None otherwise."""
        with self._lock:
            entry = self._entries.get(staging)
            if entry is None:
                return None
            if self._clock() - entry.read_at > self._fresh:
                del self._entries[staging]
                return None
        if entry.volume_id != volume_id:
            return None
        return entry.volume, entry.device

    def forget(self, staging: str) -> None:
        """Drop what a stage at ``staging`` read: it is unstaged, or its stage failed."""
        with self._lock:
            self._entries.pop(staging, None)

    def now(self) -> float:
        """The clock's reading, taken before the reads a stage remembers."""
        return self._clock()
