"""The project's version, as installed, for ``--version`` and the logs."""

from __future__ import annotations

import argparse
from importlib import metadata

DISTRIBUTION = "linstor-volume-plugin"


def project_version() -> str:
    """The installed distribution's version; a source tree that was never installed says so."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``--version`` prints ``<prog> <version>`` and exits 0, as every console script does."""
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {project_version()}", help="print the version"
    )
