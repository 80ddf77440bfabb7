"""The body of every audit wrapper: record one host command, refuse it if it strays, else run it.

Each wrapped tool (``mount``, ``mkfs.ext4``, ``resize2fs``...) is a two-line script in a
directory put first on the audited process's ``PATH``; it runs this file with the policy's
path. The wrapper works out which arguments name files or devices (absolute, relative to the
caller's working directory, values of ``key=value`` and comma lists), records what each one
is (block device and its loop backing file, mount point and its source) as one JSON line, and
refuses the command (exit 1, nothing run) when an argument lies outside the policy: a block
device that is not a loop device over one of the allowed backing directories, or a path
outside the allowed roots. Refusing keeps a fuzzed request from ever formatting, growing or
unmounting anything of the host; the JSON line lets the test fail on it.

Standard library only, and started with ``-I -S``: it runs for every command of the process.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _loop_backing(rdev: int) -> str | None:
    sys_dir = f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/loop/backing_file"
    try:
        with open(sys_dir) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _mount_source(real: str) -> str | None:
    """The source of the topmost mount at ``real`` in this mount namespace, or None."""
    source = None
    try:
        with open("/proc/self/mountinfo") as fh:
            for line in fh:
                fields = line.split()
                sep = fields.index("-")
                point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
                if point == real:
                    source = fields[sep + 2]
    except (OSError, ValueError, IndexError):
        return None
    return source


def _candidates(arg: str, cwd: str | None) -> list[str]:
    """The parts of one argument that may name a file: itself, ``k=v`` values, comma items."""
    parts = [arg]
    for item in arg.split(","):
        parts.append(item)
        if "=" in item:
            parts.append(item.split("=", 1)[1])
    found = []
    for part in dict.fromkeys(parts):
        if not part or part.startswith("-"):
            continue
        looks_like_path = part.startswith(("/", "./", "../")) or part in (".", "..") or "/" in part
        exists_here = cwd is not None and os.path.lexists(os.path.join(cwd, part))
        if looks_like_path or exists_here:
            found.append(part)
    return found


def describe(part: str, cwd: str | None) -> dict[str, object]:
    """What a path-like argument names, as the command would see it."""
    path = part if os.path.isabs(part) or cwd is None else os.path.join(cwd, part)
    real = os.path.realpath(path)
    info: dict[str, object] = {"arg": part, "real": real, "exists": os.path.lexists(path)}
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return info
    if stat.S_ISBLK(st.st_mode):
        info["rdev"] = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
        info["backing"] = _loop_backing(st.st_rdev)
        return info
    source = _mount_source(real)
    if source is not None:
        info["mount_source"] = source
        try:
            src = os.stat(source)
            if stat.S_ISBLK(src.st_mode):
                info["mount_rdev"] = f"{os.major(src.st_rdev)}:{os.minor(src.st_rdev)}"
        except (OSError, ValueError):
            pass
    return info


def verdict(info: dict[str, object], policy: dict[str, list[str]]) -> str | None:
    """Why the policy refuses this argument, or None when it is inside the policy."""
    if "rdev" in info:
        backing = info.get("backing")
        if not isinstance(backing, str) or not _within(backing, policy["backing_dirs"]):
            return f"block device {info['arg']} ({info['rdev']}) is not one of the volumes' loop devices"
        return None
    real = str(info["real"])
    if _within(real, policy["path_roots"]) or _within(real, policy["backing_dirs"]):
        return None
    return f"path {info['arg']} ({real}) is outside the allowed roots"


def main(argv: list[str]) -> int:
    policy_file, real_tool, *args = argv
    with open(policy_file) as fh:
        policy = json.load(fh)
    tool = os.path.basename(real_tool)
    try:
        cwd: str | None = os.getcwd()
    except OSError:
        cwd = None  # the working directory was removed under the caller
    infos = [describe(part, cwd) for arg in args for part in _candidates(arg, cwd)]
    refusals = [why for why in (verdict(i, policy) for i in infos) if why]
    record = {
        "t": time.time(),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "cwd": cwd,
        "tool": tool,
        "argv": args,
        "paths": infos,
        "refused": refusals,
    }
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(policy["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    if refusals:
        sys.stderr.write(f"{tool}: refused by the fuzz audit: {'; '.join(refusals)}\n")
        return 1
    os.execv(real_tool, [tool, *args])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
