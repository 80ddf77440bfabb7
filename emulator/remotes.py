"""Remotes as the backup endpoints see them: lookup, names, ret codes and the lock rule.

Both kinds of shipment (S3 in ``api_backups``, LINSTOR to LINSTOR in ``l2l``) and the
remote endpoints themselves find remotes and word their errors the same way, so those
rules live here rather than in one endpoint module the others would import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from emulator import names
from emulator import retcodes as rc
from emulator.core import Emulator

T = TypeVar("T")

MASK_REMOTE = 0x40000
MASK_BACKUP = 0x80000
FAIL_INVLD_CONF = 230
FAIL_INVLD_BACKUP_CONFIG = 238
FAIL_INVLD_REMOTE_NAME = 239
FAIL_NOT_FOUND_REMOTE = 321
FAIL_EXISTS_REMOTE = 527


def backup_error(code: int, message: str, **kw: Any) -> rc.Entry:
    """An error entry about backups: the code, with ``MASK_BACKUP`` as its object bits."""
    return rc.error(code, message, 0, MASK_BACKUP, **kw)


def describe(name: str) -> str:
    return f"Remote '{name}'"


def unlocked(emu: Emulator, fn: Callable[[], T]) -> T:
    """Network calls run without the state lock (the dispatcher holds it exactly once)."""
    emu.lock.release()
    try:
        return fn()
    finally:
        emu.lock.acquire()


def find(
    emu: Emulator, name: str, kind: str | None = None, op: int = 0, obj: int = MASK_REMOTE
) -> dict[str, Any]:
    """A remote by name; ``kind`` ``S3``/``LINSTOR`` also checks its type."""
    rc.refuse_invalid(name_problem(name), FAIL_INVLD_REMOTE_NAME, op, obj)
    remote = emu.state.remotes.get(names.key(name))
    if remote is None or "DELETE" in remote.get("flags", []):
        raise rc.ApiFailure(rc.error(FAIL_NOT_FOUND_REMOTE, f"{describe(name)} not found.", op, obj))
    if kind is not None and remote["type"] != kind:
        raise rc.ApiFailure(
            rc.error(
                FAIL_EXISTS_REMOTE,
                f"The remote with the name '{remote['name']}' is not a {kind.lower()} remote.",
                op,
                obj,
            )
        )
    return remote


def name_problem(name: str) -> str | None:
    """Remote names follow the host name rules of the controller (letters, digits, '-', '.', '_')."""
    if not name:
        return "The remote name is empty."
    if len(name) > 255 or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        return f"Invalid remote name '{name}': only letters, digits, '_', '-' and '.' are allowed."
    return None
