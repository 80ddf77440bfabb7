"""Build the plugin image ``linstor-volume-plugin:<version>`` without any registry.

Kubernetes and Nomad run the CSI driver from this image (``command: linstor-csi``); the
Docker plugin, the doctor and the emulator are in it as well. It is made the way the
managed Docker plugin is (``assemble_rootfs.py``): a root filesystem holding the Python
interpreter that runs this script (the one the tests use), the runtime dependencies at
the versions pinned in ``constraints.txt``, the project installed from its own wheel,
and the block-device and filesystem tools from this machine's Debian packages with the
libraries they load. ``docker import`` turns it into an image tagged with the version in
``pyproject.toml``. The image lists what it holds in
``/usr/local/share/linstor-volume-plugin/packages.txt``.

Run it with the project's virtual environment (``scripts/bootstrap.sh`` makes one), as
root so the rootfs can be tried with ``chroot`` first:
``.venv/bin/python deploy/docker/build_image.py [--tag NAME:TAG] [--rootfs DIR]``.
``DOCKER_HOST`` selects the daemon, as for the docker CLI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import assemble_rootfs  # lives beside this script

REPO_ROOT = assemble_rootfs.REPO_ROOT
IMAGE_NAME = "linstor-volume-plugin"
CONSTRAINTS = Path(__file__).resolve().parent / "constraints.txt"
MANIFEST = "usr/local/share/linstor-volume-plugin/packages.txt"
# What the wheel is built from: the distribution's packages, its metadata and the proto.
SOURCES = ("pyproject.toml", "README.md", "plugin", "csi", "docker_plugin", "emulator", "tools", "protos")
IMAGE_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


class BuildError(Exception):
    """A reason the image cannot be built, in a sentence that says what to do."""


def project_version() -> str:
    return str(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"])


def default_tag() -> str:
    return f"{IMAGE_NAME}:{project_version()}"


def normalize(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def read_constraints(path: Path = CONSTRAINTS) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines ignored) as {normalized name: version}."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise BuildError(f"{path.name} line {number}: expected name==version, found {raw.strip()!r}")
        pins[normalize(name.strip())] = version.strip()
    return pins


def installed_runtime() -> dict[str, str]:
    """The project's runtime dependencies as installed here: {normalized name: version}."""
    return {
        normalize(dist.metadata["Name"]): dist.version
        for dist in assemble_rootfs.runtime_distributions(assemble_rootfs.PROJECT)
    }


def check_pins(installed: dict[str, str], pins: dict[str, str]) -> None:
    """The image gets exactly the pinned set: anything else is refused with the difference."""
    problems = []
    for name in sorted(set(installed) | set(pins)):
        have, want = installed.get(name), pins.get(name)
        if have == want:
            continue
        if want is None:
            problems.append(f"{name} {have} is a runtime dependency but is not pinned")
        elif have is None:
            problems.append(f"{name}=={want} is pinned but is not a runtime dependency here")
        else:
            problems.append(f"{name} is {have} here, pinned {want}")
    if problems:
        raise BuildError(
            "the virtual environment does not hold the pinned packages ("
            + "; ".join(problems)
            + f"): install them with `pip install -c {CONSTRAINTS.relative_to(REPO_ROOT)} -e .`,"
            " or update the pins on purpose"
        )


def build_wheel(workdir: Path) -> Path:
    """The project's wheel, built offline from a copy of the sources (the checkout stays clean)."""
    src = workdir / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = workdir / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(out), str(src)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    wheels = sorted(out.glob("*.whl")) if out.is_dir() else []
    if proc.returncode != 0 or len(wheels) != 1:
        raise BuildError(f"building the project's wheel failed:\n{proc.stdout}{proc.stderr}")
    return wheels[0]


def debian_packages(paths: list[Path]) -> dict[str, str]:
    """{Debian package: version} for the files given, as dpkg knows them (empty without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return {}
    owners: set[str] = set()
    for path in paths:
        names = {str(path), str(path.resolve())}
        # usrmerge: dpkg may know /sbin/mkfs.ext4 while the file is found as /usr/sbin/mkfs.ext4.
        names |= {n.removeprefix("/usr") for n in names} | {
            "/usr" + n for n in names if not n.startswith("/usr/")
        }
        for candidate in sorted(names):
            proc = subprocess.run(
                ["dpkg-query", "-S", candidate], capture_output=True, text=True, check=False
            )
            if proc.returncode == 0:
                owners.update(p.strip().split(":")[0] for p in proc.stdout.split(": ", 1)[0].split(","))
                break
    versions = {}
    for package in sorted(owners):
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, check=False
        )
        versions[package] = proc.stdout.strip() if proc.returncode == 0 else "unknown"
    return versions


def write_manifest(rootfs: Path, wheel: Path, pins: dict[str, str]) -> str:
    tools = [path for _, path in assemble_rootfs.host_tools(assemble_rootfs.TOOLS)]
    lines = [
        f"# {IMAGE_NAME} {project_version()}",
        f"python {sys.version.split()[0]}",
        f"wheel {wheel.name}",
        *(f"python-package {name}=={version}" for name, version in sorted(pins.items())),
        *(f"debian-package {name} {version}" for name, version in debian_packages(tools).items()),
    ]
    text = "\n".join(lines) + "\n"
    path = rootfs / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def smoke_test(rootfs: Path) -> None:
    """Every launcher must start from the rootfs alone (root only: chroot)."""
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        print("build_image: not root, skipping the chroot smoke test", file=sys.stderr)
        return
    for name in ("linstor-csi", "linstor-docker-volume", "linstor-plugin-doctor", "linstor-emulator"):
        proc = subprocess.run(
            ["chroot", str(rootfs), f"/usr/local/bin/{name}", "--help"],
            capture_output=True, text=True, check=False, env={"PATH": IMAGE_PATH},
        )  # fmt: skip
        if proc.returncode != 0:
            raise BuildError(f"{name} does not start from the assembled rootfs:\n{proc.stderr[-2000:]}")


def docker_import(rootfs: Path, tag: str) -> str:
    """Tar the rootfs into ``docker import``; returns the image id."""
    docker = shutil.which("docker")
    if docker is None:
        raise BuildError("the docker CLI is not installed (Debian package docker.io)")
    version = project_version()
    changes = [
        f"ENV PATH={IMAGE_PATH}",
        "ENV PYTHONUNBUFFERED=1",
        "WORKDIR /",
        'CMD ["linstor-csi", "--help"]',
        f"LABEL org.opencontainers.image.title={IMAGE_NAME}",
        f"LABEL org.opencontainers.image.version={version}",
        "LABEL org.opencontainers.image.licenses=Apache-2.0",
    ]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", "-", "."], stdout=subprocess.PIPE
    )
    args = [docker, "import"]
    for change in changes:
        args += ["--change", change]
    proc = subprocess.run([*args, "-", tag], stdin=tar.stdout, capture_output=True, text=True, check=False)
    if tar.stdout is not None:
        tar.stdout.close()
    tar.wait()
    if tar.returncode != 0 or proc.returncode != 0:
        raise BuildError(f"docker import {tag} failed: {proc.stderr.strip() or 'tar failed'}")
    return proc.stdout.strip()


def build(tag: str, rootfs: Path | None = None, import_image: bool = True) -> str:
    pins = read_constraints()
    check_pins(installed_runtime(), pins)
    with tempfile.TemporaryDirectory(prefix="linstor-image-") as tmp:
        work = Path(tmp)
        wheel = build_wheel(work)
        target = rootfs or work / "rootfs"
        assemble_rootfs.assemble(target, wheel)
        write_manifest(target, wheel, pins)
        smoke_test(target)
        if not import_image:
            return str(target)
        image_id = docker_import(target, tag)
    print(f"built {tag} ({image_id})")
    return image_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tag", default=default_tag(), help="image name and tag (default: %(default)s)")
    parser.add_argument(
        "--rootfs", type=Path, help="assemble the rootfs into this new directory and import nothing"
    )
    args = parser.parse_args(argv)
    try:
        build(args.tag, args.rootfs, import_image=args.rootfs is None)
    except BuildError as exc:
        print(f"build_image: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
