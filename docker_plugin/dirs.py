"""Directories made with the mode asked for, whatever the umask of the process."""

from __future__ import annotations

import os
from pathlib import Path


def make_dirs(path: str | os.PathLike[str], mode: int, parents_mode: int = 0o755) -> None:
    """Create ``path`` (``mode``) and its missing parents (``parents_mode``); existing ones stay.

    ``os.makedirs`` leaves the parents to the umask: under umask 0 they came out 0777.
    """
    missing: list[Path] = []
    current = Path(path)
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        wanted = mode if directory == Path(path) else parents_mode
        try:
            directory.mkdir(mode=wanted)
        except FileExistsError:
            continue
        os.chmod(directory, wanted)
