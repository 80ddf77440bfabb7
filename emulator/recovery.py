"""Start-up recovery: what requests cut short by a crash (kill -9, power loss) left on the host.

A request's changes reach the state file only when it has finished (see
:mod:`emulator.reservations`), so after a crash the state is the one from before the
interrupted request, and its host objects are orphans: backing files the state does not
name, loop devices bound to them, ``drbd<minor>`` nodes of minors nobody owns, or a device
still attached for a volume no resource needs any more. They are removed here, before the
devices the state does need are attached again, so a retried request starts from clean ground.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from emulator import state as st

if TYPE_CHECKING:
    from emulator.core import Emulator

log = logging.getLogger("emulator")


def sweep(emu: Emulator) -> None:
    """Remove files, loops and device nodes the saved state does not know."""
    keep: set[str] = set()
    minors: set[int] = set()
    for rd in emu.state.resource_definitions.values():
        for vd in rd.volume_definitions.values():
            minors.add(vd.minor)
            if vd.backing:
                keep.add(vd.backing)
        for snap in rd.snapshots.values():
            keep.update(sv.file for sv in snap.volumes.values() if sv.file)
    try:
        for what in emu.storage.sweep(keep, minors if emu.drbd else set()):
            log.warning("removed %s, left by a request that did not finish", what)
    except Exception as exc:
        log.error("could not remove what unfinished requests left behind: %s", exc)


def release_stale(emu: Emulator, rd: st.ResourceDefinition) -> None:
    """Release a device still attached although no resource needs it (a crash mid-create or mid-delete)."""
    for vd in rd.volume_definitions.values():
        if not vd.backing or emu.needs_device(rd, vd) or emu.storage.loop_for(Path(vd.backing)) is None:
            continue
        try:
            emu.storage.detach(Path(vd.backing), emu.minor_arg(vd))
            log.warning("released the device of %s, which no resource needs", vd.backing)
        except Exception as exc:
            log.warning("keeping the device of %s, which no resource needs: %s", vd.backing, exc)
