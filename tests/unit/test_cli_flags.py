"""What every console script shares: ``--version`` and one spelling of shared flags."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable

import pytest

from csi.cli import build_parser as csi_parser
from docker_plugin.cli import build_parser as docker_parser
from plugin import version
from plugin.version import project_version
from tests.conftest import REPO_ROOT
from tools.doctor import build_parser as doctor_parser

SCRIPTS = [
    ("emulator", "linstor-emulator"),
    ("csi", "linstor-csi"),
    ("docker_plugin", "linstor-docker-volume"),
]


def test_the_version_is_the_projects() -> None:
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert f'version = "{project_version()}"' in text


@pytest.mark.parametrize(("module", "prog"), SCRIPTS)
def test_version_flag_prints_the_project_version(module: str, prog: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{prog} {project_version()}"


@pytest.mark.parametrize("parser", [docker_parser, csi_parser, doctor_parser])
def test_the_version_is_looked_up_only_for_the_version_flag(
    parser: Callable[[], argparse.ArgumentParser], monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    monkeypatch.setattr(version, "project_version", lambda: looked_up.append("version") or "9.9")
    parser().parse_args([])
    assert looked_up == []  # start-up never reads the installed metadata for it
    with pytest.raises(SystemExit):
        parser().parse_args(["--version"])
    assert looked_up == ["version"]


def test_doctor_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        doctor_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"linstor-plugin-doctor {project_version()}"


def test_metrics_address_has_one_spelling_and_the_old_one_still_works() -> None:
    parser = docker_parser()
    assert parser.parse_args(["--metrics-address", "127.0.0.1"]).metrics_address == "127.0.0.1"
    assert parser.parse_args(["--metrics-addr", "10.0.0.1"]).metrics_address == "10.0.0.1"
    assert parser.parse_args([]).metrics_address == "0.0.0.0"
    assert "--metrics-addr " not in parser.format_help()  # hidden: the help shows one spelling
    assert "--metrics-address" in parser.format_help()


def test_both_daemons_take_controllers_and_metrics_address() -> None:
    from csi.cli import build_parser as csi_parser

    for parser in (csi_parser(), docker_parser()):
        args = parser.parse_args(["--metrics-address", "127.0.0.2", "--controllers", "http://c1:3370"])
        assert args.metrics_address == "127.0.0.2"
        assert (getattr(args, "controllers", None) or args.linstor_endpoint) == "http://c1:3370"
    # the official driver's spelling stays
    assert (
        csi_parser().parse_args(["--linstor-endpoint", "http://c2:3370"]).linstor_endpoint == "http://c2:3370"
    )
