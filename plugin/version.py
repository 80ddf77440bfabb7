"""The project's version, as installed, for ``--version`` and the logs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

DISTRIBUTION = "linstor-volume-plugin"


def project_version() -> str:
    """The installed distribution's version; a source tree that was never installed says so."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """Prints ``<prog> <version>`` and exits 0; the version is looked up only when asked for.

    Looking it up reads the installed distribution's metadata, a few milliseconds every
    daemon would otherwise spend at each start for a flag nobody passed.
    """

    def __init__(
        self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, help: str | None = None
    ) -> None:
        super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        sys.stdout.write(f"{parser.prog} {project_version()}\n")
        parser.exit()


def add_version_flag(parser: argparse.ArgumentParser) -> None:
    """``--version`` prints ``<prog> <version>`` and exits 0, as every console script does."""
    parser.add_argument("--version", action=_VersionAction, help="print the version")
