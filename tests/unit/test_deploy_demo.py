"""The demo's command line and the README's commands for it agree with the code.

The demo itself runs for real in tests/e2e/test_demo.py; these checks need nothing but bash.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tools import doctor

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_SCRIPT = REPO_ROOT / "scripts" / "run-demo.sh"


def readme_doctor_line() -> str:
    text = (REPO_ROOT / "README.md").read_text().replace("\\\n", " ")
    lines = [
        line for line in text.splitlines() if "linstor-plugin-doctor" in line and line.startswith("sudo")
    ]
    assert len(lines) == 1, "the README shows one doctor command for the demo"
    return lines[0].split("#", 1)[0]


def expand(line: str, env: dict[str, str], cwd: Path) -> list[str]:
    """The words a user's shell makes of ``line``, without running it."""
    script = f"set -- {line}\nprintf '%s\\n' \"$@\""
    clean = {k: v for k, v in os.environ.items() if k not in ("DEMO_DIR", "EMULATOR_PORT")}
    proc = subprocess.run(
        ["bash", "-c", script], env={**clean, **env}, cwd=cwd, capture_output=True, text=True, check=True
    )
    return proc.stdout.splitlines()


@pytest.mark.parametrize(
    ("env", "url", "socket"),
    [
        ({}, "http://127.0.0.1:3370", "{cwd}/.demo/csi/csi.sock"),
        (
            {"DEMO_DIR": "/tmp/demo", "EMULATOR_PORT": "3371"},
            "http://127.0.0.1:3371",
            "/tmp/demo/csi/csi.sock",
        ),
    ],
)
def test_readme_doctor_line_follows_the_demo_settings(
    env: dict[str, str], url: str, socket: str, tmp_path: Path
) -> None:
    words = expand(readme_doctor_line(), env, tmp_path)
    start = next(i for i, w in enumerate(words) if w.endswith("linstor-plugin-doctor")) + 1
    args = doctor.build_parser().parse_args(words[start:])
    assert args.controllers == url
    assert args.csi_endpoint == "unix://" + socket.format(cwd=tmp_path)


def test_demo_prints_a_doctor_line_with_its_own_settings() -> None:
    text = DEMO_SCRIPT.read_text()
    line = next(line for line in text.splitlines() if "linstor-plugin-doctor" in line)
    assert "--controllers $LS_CONTROLLERS" in line
    assert "--csi-endpoint unix://$DEMO/csi/csi.sock" in line
    assert "--docker-socket $PLUGIN_SOCKET" in line
    words = shlex.split(line.replace("$", ""))
    start = next(i for i, w in enumerate(words) if w.endswith("linstor-plugin-doctor")) + 1
    doctor.build_parser().parse_args(words[start:])


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(DEMO_SCRIPT), *args], capture_output=True, text=True, timeout=30)


def test_demo_help_lists_its_flags_and_settings() -> None:
    helped = run_demo("--help")
    assert helped.returncode == 0, helped.stderr
    for word in ("--dev-dir", "--plugin-socket", "DEMO_DIR", "EMULATOR_PORT", "DEMO_DEV_DIR", "DOCKER_HOST"):
        assert word in helped.stdout, word
    assert not re.search(r"^set -euo", helped.stdout, flags=re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--plugin-socket", "relative.sock"), "absolute path ending in .sock"),
        (("--plugin-socket=/run/docker/plugins/linstor",), "absolute path ending in .sock"),
        (("--frobnicate",), "unknown argument --frobnicate"),
    ],
)
def test_demo_refuses_bad_arguments_before_touching_anything(args: tuple[str, ...], message: str) -> None:
    refused = run_demo(*args)
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "bootstrap" not in refused.stdout + refused.stderr
