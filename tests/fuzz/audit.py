"""Audited host commands: wrappers on ``PATH`` and the checks the fuzz tests make on their log.

A daemon under test (CSI driver, Docker plugin, emulator) gets a ``PATH`` whose first entry
is a directory of wrappers, one per tool the project runs. Every wrapper runs
:mod:`tests.fuzz.audit_exec`, which logs the command with what its path arguments name and
refuses it when it strays outside the policy (see there). The test then reads the lines a
request produced and checks them against that request's volume: every block device a node
command names, and the source of every mount point it acts on, must be the volume's own.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

AUDIT_EXEC = Path(__file__).with_name("audit_exec.py")

# What the node services and the emulator run (plugin/node/, emulator/blockdev.py).
NODE_TOOLS = (
    "mount", "umount", "blkid", "blockdev", "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "resize2fs",
    "e2fsck", "dumpe2fs", "xfs_growfs", "xfs_info", "xfs_io", "btrfs", "wipefs", "fsfreeze",
)  # fmt: skip
EMULATOR_TOOLS = (*NODE_TOOLS, "losetup", "cp", "truncate", "dd", "udevadm")


@dataclass
class AuditLog:
    """One audited process's command log, read from where the previous request stopped."""

    path: Path
    offset: int = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new_records(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        return [json.loads(line) for line in data.splitlines() if line.strip()]


@dataclass
class AuditedTools:
    """A wrapper directory, its policy file and its log, for one audited process."""

    base: Path
    path_roots: list[str]
    backing_dirs: list[str]
    tools: Iterable[str] = NODE_TOOLS
    log: AuditLog = field(init=False)

    def __post_init__(self) -> None:
        self.bin_dir = self.base / "bin"
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self.log = AuditLog(self.base / "commands.jsonl")
        policy = self.base / "policy.json"
        policy.write_text(
            json.dumps(
                {"log": str(self.log.path), "path_roots": self.path_roots, "backing_dirs": self.backing_dirs}
            )
        )
        search = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        for tool in self.tools:
            real = shutil.which(tool, path=search)
            if real is None:
                continue  # a tool this host lacks fails the same way with or without the wrapper
            script = self.bin_dir / tool
            script.write_text(f'#!/bin/sh\nexec {sys.executable} -I -S {AUDIT_EXEC} {policy} {real} "$@"\n')
            script.chmod(0o755)

    def env(self, base_env: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base_env is None else base_env)
        env["PATH"] = f"{self.bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        return env


def refusals(records: Iterable[dict[str, object]]) -> list[str]:
    """Commands the wrappers refused, one line each."""
    return [
        f"{r['tool']} {' '.join(map(str, r['argv']))}: {'; '.join(map(str, r['refused']))}"  # type: ignore[arg-type]
        for r in records
        if r["refused"]
    ]


def foreign_targets(records: Iterable[dict[str, object]], own_rdevs: set[str]) -> list[str]:
    """Commands acting on a device, or on a mount of a device, that is not the request's volume's.

    ``own_rdevs`` are ``major:minor`` of the volume's devices on this node (empty for a request
    naming no known volume: then no device may be touched at all).
    """
    found = []
    for r in records:
        for info in r["paths"]:  # type: ignore[union-attr]
            dev = info.get("rdev") or info.get("mount_rdev")
            if dev is None and "mount_source" in info:
                dev = f"non-block mount ({info['mount_source']})"
            if dev is not None and dev not in own_rdevs:
                found.append(f"{r['tool']} {' '.join(map(str, r['argv']))}: {info['arg']} is {dev}")
    return found


def rdev_of(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
