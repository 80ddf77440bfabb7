"""IO limits on the node: a volume's ``qos.linbit.com/*`` limits written into the pod's cgroup.

LINBIT's driver only hands the limits on (publish context -> VolumeAttachment metadata)
and leaves enforcement to the nri-volume-qos plugin, which writes cgroup v2 ``io.max``
into each container's cgroup when the container is created. This driver applies them
itself at NodePublishVolume, one level up: kubelet makes the pod's cgroup before it
mounts the pod's volumes, and a limit on the pod cgroup holds for every container in it
(together, where nri-volume-qos gives each container the full limit). So no NRI plugin
and no NRI-enabled runtime are needed.

Where the limits go:

- cgroup v2 (``/sys/fs/cgroup`` with ``cgroup.controllers``): ``io.max`` of the pod's
  cgroup, ``MAJ:MIN rbps=.. wbps=.. riops=.. wiops=..``; an unset limit is ``max``.
- cgroup v1 (``/sys/fs/cgroup/blkio``): ``blkio.throttle.{read,write}_{bps,iops}_device``
  of the pod's cgroup, ``MAJ:MIN value``; 0 removes a rule.

The pod's cgroup is found from its UID (kubelet passes ``csi.storage.k8s.io/pod.uid`` with
``podInfoOnMount: true``) under either cgroup driver: systemd
(``kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice``) or
cgroupfs (``kubepods/burstable/pod<uid>``). The device is the one LINSTOR reports for the
volume on this node, never a path from the request, and the limits are the volume's record
in LINSTOR at publish time (the publish context keeps what they were at attach time, for
nri-volume-qos), so a VolumeAttributesClass change holds from the next pod on. Enforcement
is best effort, as with nri-volume-qos: a node without an io controller, or a pod cgroup that cannot be found,
gets a warning in the log and the volume is published without limits.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plugin.observability import log_fields
from plugin.params.qos import Limits, stored_limits

if TYPE_CHECKING:
    from plugin.models import Volume

log = logging.getLogger(__name__)

#: The cgroup mount of the host; tests point it at a private tree.
CGROUP_ROOT = "/sys/fs/cgroup"
POD_UID_KEY = "csi.storage.k8s.io/pod.uid"
_QOS_CLASSES = ("", "burstable", "besteffort")
V1_FILES = {
    "rbps": "blkio.throttle.read_bps_device",
    "wbps": "blkio.throttle.write_bps_device",
    "riops": "blkio.throttle.read_iops_device",
    "wiops": "blkio.throttle.write_iops_device",
}


@dataclass(frozen=True)
class Applied:
    """Where the limits went (``cgroup``) or why they did not (``reason``)."""

    cgroup: str = ""
    reason: str = ""


def pod_cgroup_candidates(hierarchy: Path, pod_uid: str) -> list[Path]:
    """The pod's cgroup directory under both kubelet cgroup drivers and every QoS class."""
    escaped = pod_uid.replace("-", "_")
    paths = []
    for qos_class in _QOS_CLASSES:
        if qos_class:
            paths.append(
                hierarchy
                / "kubepods.slice"
                / f"kubepods-{qos_class}.slice"
                / f"kubepods-{qos_class}-pod{escaped}.slice"
            )
            paths.append(hierarchy / "kubepods" / qos_class / f"pod{pod_uid}")
        else:
            paths.append(hierarchy / "kubepods.slice" / f"kubepods-pod{escaped}.slice")
            paths.append(hierarchy / "kubepods" / f"pod{pod_uid}")
    return paths


def device_numbers(device: str) -> str:
    """``MAJ:MIN`` of a block device node."""
    info = os.stat(device)
    if not stat.S_ISBLK(info.st_mode):
        raise ValueError(f"{device} is not a block device")
    return f"{os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"


def io_max_line(numbers: str, limits: Limits) -> str:
    values = {"rbps": limits.rbps, "wbps": limits.wbps, "riops": limits.riops, "wiops": limits.wiops}
    return numbers + "".join(f" {key}={value or 'max'}" for key, value in values.items())


def _safe_uid(pod_uid: str) -> bool:
    return bool(pod_uid) and len(pod_uid) <= 64 and all(c.isalnum() or c == "-" for c in pod_uid)


def apply_limits(limits: Limits, device: str, pod_uid: str, root: str | None = None) -> Applied:
    """Write the limits for ``device`` into the pod's cgroup, v2 first, then v1."""
    if not _safe_uid(pod_uid):
        return Applied(reason="kubelet passed no pod UID (the CSIDriver needs podInfoOnMount: true)")
    try:
        numbers = device_numbers(device)
    except (OSError, ValueError) as exc:
        return Applied(reason=f"cannot read the device numbers of {device}: {exc}")
    base = Path(root or CGROUP_ROOT)
    v2 = base if (base / "cgroup.controllers").exists() else None
    v1 = base / "blkio" if (base / "blkio" / "blkio.throttle.read_bps_device").exists() else None
    if v2 is None and v1 is None:
        return Applied(reason=f"no cgroup io controller under {base} (neither cgroup v2 io.max nor v1 blkio)")
    reasons = []
    if v2 is not None:
        pod = next((p for p in pod_cgroup_candidates(v2, pod_uid) if p.is_dir()), None)
        if pod is None:
            reasons.append(f"no cgroup v2 directory of pod {pod_uid} under {v2}")
        elif not (pod / "io.max").exists():
            reasons.append(f"the io controller is not enabled for {pod} (cgroup v2 has no io.max there)")
        else:
            try:
                (pod / "io.max").write_text(io_max_line(numbers, limits) + "\n")
                return Applied(cgroup=str(pod))
            except OSError as exc:
                reasons.append(f"writing {pod / 'io.max'} failed: {exc}")
    if v1 is not None:
        pod = next((p for p in pod_cgroup_candidates(v1, pod_uid) if p.is_dir()), None)
        if pod is None:
            reasons.append(f"no blkio cgroup of pod {pod_uid} under {v1}")
        else:
            values = {"rbps": limits.rbps, "wbps": limits.wbps, "riops": limits.riops, "wiops": limits.wiops}
            try:
                for key, name in V1_FILES.items():
                    (pod / name).write_text(f"{numbers} {values[key]}\n")
                return Applied(cgroup=str(pod))
            except OSError as exc:
                reasons.append(f"writing the blkio throttle files of {pod} failed: {exc}")
    return Applied(reason="; ".join(reasons))


def apply_for_publication(volume: Volume, device: str, volume_context: Mapping[str, str]) -> Applied | None:
    """NodePublishVolume's part: None when the volume has no limits.

    The limits are the volume's record in LINSTOR, read by this publish or by the stage
    right before it (at most seconds earlier, see ``csi.recent_stages``), not the publish
    context of the attachment, so limits changed by ControllerModifyVolume hold from the
    next pod on.
    """
    limits = stored_limits(volume.properties)
    if not limits:
        return None
    volume_id = volume.id
    result = apply_limits(limits, device, volume_context.get(POD_UID_KEY, ""))
    if result.cgroup:
        log_fields(
            log, logging.INFO, "IO limits applied", volume=volume_id, cgroup=result.cgroup, **limits.as_map()
        )
    else:
        log_fields(
            log,
            logging.WARNING,
            "IO limits not applied",
            volume=volume_id,
            reason=result.reason,
            **limits.as_map(),
        )
    return result
