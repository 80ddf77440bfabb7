"""Assemble the managed Docker plugin's rootfs from this machine, without any registry.

A managed plugin is a directory with ``config.json`` and a ``rootfs``. Instead of pulling
a base image, this copies what the plugin needs from the host it is built on: the Python
interpreter and its standard library, the plugin's runtime dependencies from the
virtual environment that runs this script, the project's own packages, the block-device
and filesystem tools the node side runs, and every shared library those binaries load
(found with ``ldd``). The result is a small, self-contained tree that runs anywhere the
same CPU architecture runs.

Run it with the project's virtual environment (``scripts/bootstrap.sh`` makes one):
``.venv/bin/python deploy/docker/assemble_rootfs.py ROOTFS``. It refuses to write into a
non-empty directory so it can never clobber anything.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

PROJECT = "linstor-volume-plugin"
PROJECT_PACKAGES = ("plugin", "csi", "docker_plugin", "tools")
REPO_ROOT = Path(__file__).resolve().parents[2]
# Host tools the node side runs (plugin/node/) plus what they call.
# xfs_info is a shell script: it needs sh, tail, losetup, findmnt, xfs_spaceman and xfs_db.
TOOLS = (
    "sh", "tail", "blkid", "blockdev", "mount", "umount", "losetup", "findmnt",
    "mkfs.ext4", "mke2fs", "e2fsck", "fsck.ext4", "resize2fs", "dumpe2fs",
    "mkfs.xfs", "xfs_growfs", "xfs_info", "xfs_spaceman", "xfs_db", "xfs_io", "xfs_repair",
    "mkfs.btrfs", "btrfs",
    # for a person looking inside (kubectl exec, runc exec): what is mounted, what is there
    "cat", "ls", "df",
)  # fmt: skip
REQUIRED_TOOLS = ("blkid", "blockdev", "mount", "umount", "mkfs.ext4", "resize2fs", "dumpe2fs", "e2fsck")
STDLIB_SKIP = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "site-packages", "dist-packages", "__pycache__",
}  # fmt: skip
PROPAGATED_MOUNT = "/var/lib/docker-volumes/linstor"
LIB_DIR = "/opt/linstor-volume-plugin/lib"
LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def project_requirements() -> list[str]:
    """The project's runtime requirements as ``pyproject.toml`` declares them.

    Read from the source, not from the installed project's metadata: an editable install
    keeps the dependency list of the day it was installed, while the image is built from
    the source, so a dependency dropped there must not ride along in the image.
    """
    return list(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def runtime_distributions(name: str) -> list[metadata.Distribution]:
    """The installed distributions ``name`` needs at run time (no extras), recursively.

    For this project (``PROJECT``) the first level comes from :func:`project_requirements`.
    """
    seen: dict[str, metadata.Distribution] = {}
    pending = _needed(project_requirements()) if name == PROJECT else [name]
    while pending:
        current = pending.pop()
        dist = metadata.distribution(current)
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in seen:
            continue
        seen[key] = dist
        pending += _needed(dist.requires or [])
    seen.pop(name.lower(), None)  # the project itself is copied from the source tree
    return list(seen.values())


def _needed(specs: Iterable[str]) -> list[str]:
    """The names of the requirements in ``specs`` that apply without extras, here."""
    needed = []
    for spec in specs:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            needed.append(req.name)
    return needed


def copy_file(src: Path, dest: Path) -> None:
    """Copy content (following symlinks) and mode; parents are created as needed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() or dest.is_symlink():
        return
    shutil.copy2(src, dest, follow_symlinks=True)


def copy_tree(src: Path, dest: Path, skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in skip and d != "__pycache__"]
        rel = Path(root).relative_to(src)
        for name in files:
            if name.endswith(".pyc"):
                continue
            copy_file(Path(root) / name, dest / rel / name)


def copy_interpreter(rootfs: Path) -> Path:
    """The base interpreter as /usr/local/bin/python3 and its stdlib beside it."""
    executable = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    copy_file(executable, rootfs / "usr/local/bin" / version)
    for alias in ("python3", "python"):
        link = rootfs / "usr/local/bin" / alias
        if not link.exists():
            link.symlink_to(version)
    copy_tree(stdlib, rootfs / "usr/local/lib" / version, STDLIB_SKIP)
    return rootfs / "usr/local/bin" / version


def copy_packages(rootfs: Path, wheel: Path | None = None) -> Path:
    """Runtime dependencies and the project into a directory of their own.

    Not the interpreter's site-packages: Debian's Python looks in dist-packages instead, so
    the launchers put this directory on sys.path themselves, whatever Python was copied.
    With ``wheel`` the project is installed from its wheel (every package and its
    metadata, so the installed version can be read back); otherwise the plugin's own
    packages are copied from the source tree.
    """
    target = rootfs / LIB_DIR.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for dist in runtime_distributions(PROJECT):
        for entry in dist.files or []:
            if ".." in entry.parts or entry.suffix == ".pyc":
                continue  # scripts in bin/ and byte code are not needed
            src = Path(str(dist.locate_file(entry)))
            if src.is_file():
                copy_file(src, target / entry)
    if wheel is not None:
        install_wheel(wheel, target)
    else:
        for package in PROJECT_PACKAGES:
            copy_tree(REPO_ROOT / package, target / package)
    return target


def install_wheel(wheel: Path, target: Path) -> None:
    """A pure-Python wheel is installed by unpacking it (no scripts: the launchers are ours)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = Path(member.filename).parts
            if member.is_dir() or ".." in parts or member.filename.startswith("/"):
                continue
            if parts[0].endswith(".data"):
                raise SystemExit(
                    f"assemble_rootfs: {wheel.name} carries {parts[0]}; only pure wheels install here"
                )
            dest = target / member.filename
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(member))


def write_launchers(rootfs: Path) -> list[str]:
    """One executable per console script whose package is in the rootfs, as pip would make them."""
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    lib = rootfs / LIB_DIR.lstrip("/")
    written = []
    for name, target in sorted(scripts.items()):
        module, func = target.split(":")
        if not (lib / module.split(".")[0] / "__init__.py").is_file():
            continue
        path = rootfs / "usr/local/bin" / name
        path.write_text(
            "#!/usr/local/bin/python3\n"
            "import sys\n"
            f"sys.path.insert(0, {LIB_DIR!r})\n"
            f"from {module} import {func}\n"
            f"sys.exit({func}())\n"
        )
        path.chmod(0o755)
        written.append(name)
    return written


def host_tools(tools: Iterable[str]) -> list[tuple[str, Path]]:
    found = []
    for tool in tools:
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path:
            found.append((tool, Path(path)))
    missing = [t for t in REQUIRED_TOOLS if t not in {name for name, _ in found}]
    if missing:
        raise SystemExit(f"assemble_rootfs: missing required host tools: {', '.join(missing)}")
    return found


def copy_tools(rootfs: Path, tools: list[tuple[str, Path]]) -> list[Path]:
    copied = []
    for name, path in tools:
        # Keep the directory but copy the content: mke2fs decides the filesystem by its name.
        dest = rootfs / "usr" / path.parent.name / name
        copy_file(path, dest)
        copied.append(dest)
    return copied


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def shared_libraries(binaries: Iterable[Path]) -> set[Path]:
    libs: set[Path] = set()
    for binary in binaries:
        proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            continue  # static binary or not a dynamic object
        for line in proc.stdout.splitlines():
            if "not found" in line:
                raise SystemExit(f"assemble_rootfs: {binary} needs a library the host lacks: {line.strip()}")
            match = LDD_LINE.search(line)
            if match:
                libs.add(Path(match.group(1)))
    return libs


def copy_libraries(rootfs: Path, libs: set[Path]) -> None:
    """Libraries keep their path when it is a system path, else go next to libc (always searched)."""
    libc = next((lib for lib in libs if lib.name.startswith("libc.so")), None)
    system_dir = libc.parent if libc else Path("/usr/lib")
    system_prefixes = ("/lib", "/usr/lib", "/lib64", "/usr/lib64")
    for lib in libs:
        if str(lib).startswith(system_prefixes):
            copy_file(lib, rootfs / str(lib).lstrip("/"))
        else:
            copy_file(lib, rootfs / str(system_dir).lstrip("/") / lib.name)


def mirror_usrmerge(rootfs: Path) -> None:
    """Recreate the host's /bin -> usr/bin style links so library paths resolve the same way."""
    for name in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = Path("/") / name
        if host.is_symlink():
            link = rootfs / name
            (rootfs / os.readlink(host)).mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.readlink(host))


def base_files(rootfs: Path) -> None:
    for d in (
        "etc",
        "tmp",
        "proc",
        "sys",
        "dev",
        "run/docker/plugins",
        "run/blkid",
        PROPAGATED_MOUNT.lstrip("/"),
    ):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/usr/sbin/nologin\n")
    (rootfs / "etc/group").write_text("root:x:0:\n")
    (rootfs / "etc/mtab").symlink_to("/proc/self/mounts")
    for conf in ("/etc/mke2fs.conf", "/etc/ssl/certs/ca-certificates.crt"):
        if os.path.isfile(conf):
            copy_file(Path(conf), rootfs / conf.lstrip("/"))


def assemble(rootfs: Path, wheel: Path | None = None) -> None:
    if rootfs.exists() and any(rootfs.iterdir()):
        raise SystemExit(f"assemble_rootfs: {rootfs} is not empty; give a new directory")
    rootfs.mkdir(parents=True, exist_ok=True)
    mirror_usrmerge(rootfs)
    base_files(rootfs)
    python = copy_interpreter(rootfs)
    site = copy_packages(rootfs, wheel)
    launchers = write_launchers(rootfs)
    tools = copy_tools(rootfs, host_tools(TOOLS))
    binaries = [Path(getattr(sys, "_base_executable", sys.executable)).resolve()]
    binaries += [path for _, path in host_tools(TOOLS)]
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    binaries += [p for p in stdlib.glob("lib-dynload/*.so")]
    binaries += [p for p in site.rglob("*.so*") if is_elf(p)]
    copy_libraries(rootfs, shared_libraries(binaries))
    print(f"assembled {rootfs}: {python.relative_to(rootfs)}, {', '.join(launchers)}, {len(tools)} tools")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rootfs", type=Path, help="directory to create (must be new or empty)")
    args = parser.parse_args(argv)
    assemble(args.rootfs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
