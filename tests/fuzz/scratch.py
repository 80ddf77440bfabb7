"""Scratch data a fuzzed request must never touch: loop devices over files, and a tree of files.

The tree holds what careless path handling destroys: files with content, empty files and
empty directories (an unconfined "remove the target" deletes those), a symlink to a loop
device (a relative option like ``fsopts=victimdev`` resolves to it) and the working
directories of the daemons. :meth:`Scratch.fingerprint` digests all of it, so a test compares
the fingerprints before and after each request.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

DEVICE_BYTES = 4 * 1024 * 1024


@dataclass
class Scratch:
    """Scratch devices and files under ``base``; :meth:`close` detaches the devices."""

    base: Path
    devices: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tree = self.base / "tree"
        self.images = self.base / "images"

    def create(self, device_count: int = 2) -> None:
        self.images.mkdir(parents=True)
        for i in range(device_count):
            image = self.images / f"scratch{i}.img"
            image.write_bytes(self._pattern(i))  # recognisable, and not blank: no mkfs guard lets it pass
            out = subprocess.run(
                ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
            )
            self.devices.append(out.stdout.strip())
        self._build_tree()

    @staticmethod
    def _pattern(i: int) -> bytes:
        return bytes([0x5A + i]) * DEVICE_BYTES

    def _build_tree(self) -> None:
        """Create whatever of the tree is missing and restore file contents; safe to repeat."""
        self.tree.mkdir(parents=True, exist_ok=True)
        for d in ("empty-dir", "nested/deeper", "victimdir", "csi-cwd", "docker-cwd", "emulator-cwd"):
            (self.tree / d).mkdir(parents=True, exist_ok=True)
        for f, text in (
            ("data.txt", "scratch data that no request may change\n"),
            ("empty-file", ""),
            ("nested/deeper/keep", "keep\n"),
            ("victimdir/secret", "host data\n"),
        ):
            (self.tree / f).write_text(text)
        links = {"victimdev": self.devices[0]}
        # A relative option (fsopts=victimdev) resolves in a daemon's working directory.
        for name in ("docker-cwd", "emulator-cwd"):
            links[f"{name}/victimdev"] = self.devices[0]
            links[f"{name}/victimdir"] = str(self.tree / "victimdir")
        for link, target in links.items():
            if not (self.tree / link).is_symlink():
                (self.tree / link).symlink_to(target)

    def repair(self) -> None:
        """Undo what a failed example did to the scratch data, so the next starts from the same."""
        for i, device in enumerate(self.devices):
            subprocess.run(["blockdev", "--setrw", device], check=False, capture_output=True)
            with open(device, "r+b") as fh:
                fh.write(self._pattern(i))
        self._build_tree()

    def cwd(self, name: str) -> Path:
        return self.tree / f"{name}-cwd"

    def fingerprint(self) -> dict[str, str]:
        """Every entry of the tree (kind, mode, content or target) and every device's digest."""
        prints: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.tree, followlinks=False):
            for name in sorted(dirnames + filenames):
                path = Path(dirpath, name)
                st = path.lstat()
                if path.is_symlink():
                    what = f"link:{os.readlink(path)}"
                elif path.is_dir():
                    what = "dir"
                else:
                    what = "file:" + hashlib.sha256(path.read_bytes()).hexdigest()
                prints[str(path.relative_to(self.tree))] = f"{oct(st.st_mode)}:{what}"
        for device in self.devices:
            digest = hashlib.sha256()
            with open(device, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
            ro = Path(f"/sys/block/{Path(device).name}/ro").read_text().strip()
            prints[device] = f"{digest.hexdigest()}:ro={ro}"
        return prints

    def close(self) -> None:
        for device in self.devices:
            subprocess.run(["losetup", "--detach", device], check=False, capture_output=True)
        self.devices.clear()


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What differs between two fingerprints, in words."""
    found = [f"{k} removed" for k in before if k not in after]
    found += [f"{k} appeared" for k in after if k not in before]
    found += [f"{k} changed" for k in before if k in after and before[k] != after[k]]
    return found
