"""The committed parameter reference must be exactly what the key tables generate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from plugin.backups.snapshot_class import KEYS as SNAPSHOT_CLASS_KEYS
from plugin.params.keys import CSI_NAMESPACE, CSI_PARAMETERS, DOCKER_OPTIONS
from plugin.volumes.modify import mutable_keys
from tools.param_reference import REGENERATE, generate, main

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs" / "parameters.md"


def test_committed_reference_matches_the_code() -> None:
    assert DOCS.read_text(encoding="utf-8") == generate(), f"docs/parameters.md is stale; run: {REGENERATE}"


def _parameter_tables() -> str:
    """The page up to the mutable parameters, whose own table has two columns."""
    return generate().split("## Mutable parameters")[0]


def test_every_key_and_alias_is_documented_once() -> None:
    text = _parameter_tables()
    for spec in CSI_PARAMETERS:
        assert text.count(f"| `{CSI_NAMESPACE}/{spec.name}` |") == 1, spec.name
        for alias in spec.aliases:
            assert f"`{CSI_NAMESPACE}/{alias}`" in text
    for spec in DOCKER_OPTIONS:
        assert text.count(f"| `{spec.name}` |") == 1, spec.name
        for alias in spec.aliases:
            assert f"`{alias}`" in text


def test_table_rows_have_five_cells() -> None:
    rows = [line for line in _parameter_tables().splitlines() if line.startswith("| `")]
    assert len(rows) == len(CSI_PARAMETERS) + len(SNAPSHOT_CLASS_KEYS) + len(DOCKER_OPTIONS)
    for row in rows:
        cells = row.replace("\\|", "").strip("|").split("|")
        assert len(cells) == 5, row


def test_every_mutable_key_is_documented() -> None:
    mutable = generate().split("## Mutable parameters")[1].split("\n## ")[0]
    rows = [line for line in mutable.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [key for key, _ in mutable_keys()]
    assert "linstor.csi.linbit.com/placementCount" in rows[0]


def test_check_mode_detects_a_stale_file(tmp_path: Path) -> None:
    current = tmp_path / "parameters.md"
    current.write_text(generate(), encoding="utf-8")
    assert main(["--check", str(current)]) == 0
    current.write_text(generate().replace("placementCount", "placementcount", 1), encoding="utf-8")
    assert main(["--check", str(current)]) == 1
    assert main(["--check", str(tmp_path / "missing.md")]) == 1


def test_module_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.param_reference"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert result.stdout == generate()
