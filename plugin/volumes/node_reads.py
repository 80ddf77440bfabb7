"""What a node's requests read of a volume: its device on that node, and its record only when needed.

NodeStage, NodePublish, NodeUnpublish and NodeUnstage run on the node a pod waits on, and
each used to read the whole volume: its definition, then every replica with its volumes
(``/v1/view/resources``), which LINSTOR assembles for all the volume's nodes, when the
node needs one thing from it: the device path of the volume on this node. LINSTOR answers that alone with
``GET /v1/resource-definitions/{rd}/resources/{node}/volumes/{nr}``, one call that concerns
only this node.

So the device is read first and alone. LINSTOR answers that route with the same 404 (302,
"Resource ... not found on node ...") whether the volume does not exist or only has no
resource here, so only that answer is followed by the definition read, and the difference
is kept: NOT_FOUND for a volume LINSTOR does not know, None ("not attached here") for one
it knows. When the caller needs the volume's record (a CSI stage, for the stored mount
options of a PV without a volume context and for the IO limits the publish after it
applies), the definition is read at the same time as the device, or, for a stage, right
after it while the stage probes the device; either way its answer decides first: an
unknown volume is NOT_FOUND whatever the device read says, and a stage changes nothing
before that answer is in.

A device found on this node is taken as it is, without the definition's completeness
checks (being cloned, deleted or half-made): those stop ControllerPublishVolume, which must
succeed before a CO stages a volume, and a clone's device does not exist until its copy is
done, so the stage would wait for it and fail instead of formatting it.
"""

from __future__ import annotations

from collections.abc import Callable

from plugin.errors import NotFound
from plugin.in_thread import InThread
from plugin.linstor.client import LinstorClient
from plugin.models import Volume

#: (resource, volume number) that hold a volume id's data.
Address = Callable[[str], tuple[str, int]]
#: The volume's record from its definition alone (one REST call); NotFound for an unknown volume.
ReadRecord = Callable[[str], Volume]


class NodeReads:
    """The volume's device on a node, with or without its record."""

    def __init__(self, client: LinstorClient, address: Address, read_record: ReadRecord) -> None:
        self.client = client
        self._address = address
        self._read_record = read_record

    def device_on(self, volume_id: str, node: str, must_exist: bool = True) -> str | None:
        """The volume's device on ``node``, None when it is not attached there.

        One REST call when it is attached. Otherwise the definition is read too, so an unknown
        volume is NotFound; with ``must_exist`` False that second read is skipped, for callers
        that treat both answers alike (an unmount of whatever the volume no longer owns).
        """
        try:
            resource, number = self._address(volume_id)
        except NotFound:
            if must_exist:
                raise
            return None
        device = self._device(resource, number, node)
        if device is None and must_exist:
            self._read_record(volume_id)  # NotFound for a volume LINSTOR does not know
        return device

    def volume_on(self, volume_id: str, node: str) -> tuple[Volume, str | None]:
        """The volume's record (its definition, without replicas) and its device on ``node``.

        Two REST calls made at once (the device is read in a thread of its own), so they
        cost about one round trip. The definition's answer decides first: an unknown volume
        is NotFound, and a failed definition read is the error, whatever the device read says.
        """
        device = InThread(lambda: self._device(*self._address(volume_id), node), "node-device-read")
        try:
            volume = self._read_record(volume_id)
        except BaseException:
            device.drop()  # not needed; and no read outlives the request that made it
            raise
        return volume, device.result()

    def device_then_record(self, volume_id: str, node: str) -> tuple[str | None, PendingRecord]:
        """The volume's device on ``node`` now, and its record read meanwhile.

        For a caller with read-only work to do on the device before it needs the record (a
        stage looks at the mount table and probes the device first): the device is read
        first and alone, one round trip, and the definition in a thread of its own while the
        caller works. The caller takes the record (:meth:`PendingRecord.result`) before it
        changes anything, and before it reports an error of its own, so the definition's
        answer still decides first. A volume with no device here has its record read at once:
        NotFound for a volume LINSTOR does not know, None with the record for one it knows.
        """
        resource, number = self._address(volume_id)
        device = self._device(resource, number, node)
        if device is None:
            return None, PendingRecord.of(self._read_record(volume_id))
        return device, PendingRecord(InThread(lambda: self._read_record(volume_id), "node-record-read"))

    def _device(self, resource: str, number: int, node: str) -> str | None:
        try:
            found = self.client.get_volume(resource, node, number)
        except NotFound:  # no resource here, or no such resource at all
            return None
        return found.device_path or None


class PendingRecord:
    """A volume's record being read in a thread of its own; every :meth:`result` gives the same answer."""

    def __init__(self, read: InThread[Volume] | None) -> None:
        self._read = read
        self._volume: Volume | None = None
        self._error: BaseException | None = None

    @classmethod
    def of(cls, volume: Volume) -> PendingRecord:
        """A record already read."""
        done = cls(None)
        done._volume = volume
        return done

    def wait(self) -> bool:
        """Wait for the record (its read's error raised here); True when it was not in yet."""
        waited = self._read is not None and not self._read.done()
        self.result()
        return waited

    def result(self) -> Volume:
        """The record, once read; the read's error raised here, as often as asked."""
        if self._read is not None:
            try:
                self._volume = self._read.result()
            except BaseException as exc:  # kept, and raised to every caller that asks
                self._error = exc
            self._read = None
        if self._error is not None:
            raise self._error
        assert self._volume is not None
        return self._volume
