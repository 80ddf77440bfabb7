"""The deployment and operations docs say what the code does.

Docs rot silently: a renamed metric, a doctor check that changed severity, a moved file or
a flag that no longer exists. These tests read the pages and compare them with the code
and the repository.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import hcl2
import pytest
from prometheus_client import REGISTRY

import csi.server  # noqa: F401 - registers any metrics of its own
import docker_plugin.app  # noqa: F401
from csi import cli as csi_cli
from tests.unit.test_deploy_nomad import DRIVER_NAME, clean
from tools import doctor

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
PAGES = ("kubernetes.md", "nomad.md", "docker.md", "operations.md")


def page(name: str) -> str:
    return (DOCS / name).read_text()


def code_lines(text: str) -> list[str]:
    """Lines inside fenced code blocks, with backslash continuations joined."""
    lines: list[str] = []
    inside = False
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            inside = not inside
            continue
        if inside:
            lines.append(line.strip())
    return lines


def test_every_plugin_metric_is_documented_and_nothing_else() -> None:
    registered = {m.name for m in REGISTRY.collect() if m.name.startswith("linstor_plugin_")}
    documented = set(re.findall(r"`(linstor_plugin_[a-z_]+)`", page("operations.md")))
    # The client library names counter families without their _total suffix.
    assert {re.sub(r"_total$", "", n) for n in documented} == registered


def test_doctor_table_matches_the_tool_severities() -> None:
    row = next(line for line in page("operations.md").splitlines() if line.startswith("| `tool <command>`"))
    _, _check, fail_cell, warn_cell, _ = (cell.strip() for cell in row.split("|"))
    fail_tools = set(re.findall(r"`([\w.]+)`", fail_cell))
    warn_tools = set(re.findall(r"`([\w.]+)`", warn_cell))
    assert fail_tools == {t.command for t in doctor.TOOLS if t.verdict_if_missing == doctor.FAIL}
    assert warn_tools == {t.command for t in doctor.TOOLS if t.verdict_if_missing == doctor.WARN}


def test_doctor_check_names_are_documented() -> None:
    text = page("operations.md")
    for check in ("controller", "node", "storage pool", "tool", "drbd", "csi socket", "docker socket"):
        assert f"`{check}" in text, check


@pytest.mark.parametrize("name", PAGES)
def test_repository_paths_in_the_docs_exist(name: str) -> None:
    pattern = r"\b((?:deploy/(?:kubernetes|nomad|docker|systemd)|docs|scripts)/[\w./-]*[\w-])"
    paths = set(re.findall(pattern, page(name)))
    assert paths or name == "operations.md", f"{name} should point at the files it describes"
    for path in paths:
        assert (REPO_ROOT / path).exists(), f"{name} mentions {path}, which does not exist"


@pytest.mark.parametrize("name", PAGES)
def test_links_between_pages_resolve(name: str) -> None:
    for target in re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]+)?\)", page(name)):
        assert (DOCS / target).is_file(), f"{name} links to {target}"


@pytest.mark.parametrize("name", PAGES)
def test_doctor_command_lines_parse(name: str) -> None:
    lines = [line for line in code_lines(page(name)) if "linstor-plugin-doctor" in line]
    assert lines, f"{name} should show how to run the doctor"
    for line in lines:
        words = shlex.split(line, comments=True)
        start = next(i for i, w in enumerate(words) if w.endswith("linstor-plugin-doctor")) + 1
        args = []
        for word in words[start:]:
            if word in ("|", "&&", ";"):
                break
            args.append(word)
        try:
            doctor.build_parser().parse_args(args)
        except SystemExit:
            pytest.fail(f"{name}: linstor-plugin-doctor rejects {args}")


@pytest.mark.parametrize(
    "overlay",
    [
        "deploy/kubernetes/base",
        "deploy/kubernetes/overlays/tls",
        "deploy/kubernetes/overlays/monitoring",
        "deploy/kubernetes/overlays/piraeus",
        "deploy/kubernetes/examples",
    ],
)
def test_kustomize_paths_in_the_docs_are_kustomizations(overlay: str) -> None:
    assert overlay in page("kubernetes.md")
    assert (REPO_ROOT / overlay / "kustomization.yaml").is_file()


def test_managed_plugin_settings_table_matches_config_json() -> None:
    config = json.loads((REPO_ROOT / "deploy/docker/plugin/config.json").read_text())
    settable = {e["name"]: e["value"] for e in config["env"] if "value" in e.get("settable", [])}
    rows = re.findall(r"^\| `(LS_[A-Z_]+)` \| ([^|]+) \|", page("docker.md"), flags=re.MULTILINE)
    documented = {name: default.strip() for name, default in rows}
    assert set(documented) == set(settable)
    for name, value in settable.items():
        if value:
            assert f"`{value}`" in documented[name], (
                f"{name}: docs say {documented[name]}, config.json {value!r}"
            )


def test_nomad_raw_exec_example_is_a_valid_plugin_task() -> None:
    """The container-less task shown in nomad.md parses and gives the driver valid flags."""
    blocks = re.findall(r"```hcl\n(.*?)```", page("nomad.md"), flags=re.DOTALL)
    tasks = [b for b in blocks if "csi_plugin" in b]
    assert len(tasks) == 1
    task = next(iter(clean(hcl2.loads(tasks[0]))["task"][0].values()))
    assert task["driver"] == "raw_exec"
    assert task["csi_plugin"][0]["id"] == DRIVER_NAME
    args = [a.replace("${node.unique.name}", "node-1") for a in task["config"][0]["args"]]
    parsed = csi_cli.build_parser().parse_args(args)
    assert parsed.mode == task["csi_plugin"][0]["type"]
    assert task["config"][0]["command"].endswith("/bin/linstor-csi")
