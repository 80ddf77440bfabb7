"""The helpers every benchmark reports through: one RESULTS.md section each, one way to summarize."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.common import cpu_seconds, rss_mib, summarize, write_json, write_results

RESULTS = """# Benchmark results

Intro.

## Core

old core table

## CSI

old csi text
more csi text

## Backups

old backups
"""


def test_a_section_replaces_only_its_own_part(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(RESULTS)
    write_results("## CSI\n\nnew csi text\n", path)
    text = path.read_text()
    assert "old csi text" not in text and "more csi text" not in text
    assert "## CSI\n\nnew csi text\n\n## Backups\n\nold backups\n" in text
    assert text.startswith("# Benchmark results\n\nIntro.\n\n## Core\n\nold core table\n\n## CSI\n")


def test_the_last_section_is_replaced_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(RESULTS)
    write_results("## Backups\n\nnew backups\n", path)
    assert path.read_text().endswith("old csi text\nmore csi text\n\n## Backups\n\nnew backups\n")


def test_a_missing_section_is_appended_and_a_missing_file_made(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(RESULTS)
    write_results("## Emulator\n\nfigures\n", path)
    assert path.read_text() == RESULTS + "\n## Emulator\n\nfigures\n"
    fresh = tmp_path / "new.md"
    write_results("## Core\n\nrows\n", fresh)
    assert fresh.read_text() == "# Benchmark results\n\n## Core\n\nrows\n"


def test_a_heading_that_only_starts_alike_is_another_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("# R\n\n## CSI node\n\nkeep\n")
    write_results("## CSI\n\nnew\n", path)
    assert path.read_text() == "# R\n\n## CSI node\n\nkeep\n\n## CSI\n\nnew\n"


def test_summarize_reports_milliseconds() -> None:
    samples = [i / 1000 for i in range(1, 21)]  # 1 .. 20 ms
    summary = summarize(samples)
    assert summary == {"n": 20, "median_ms": 10.5, "p95_ms": 20.0, "min_ms": 1.0, "max_ms": 20.0}


def test_process_readings_of_this_process() -> None:
    assert rss_mib(os.getpid()) > 1
    assert cpu_seconds(os.getpid()) > 0


def test_write_json_makes_its_directory_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "out" / "quick" / "core.json"
    write_json({"benchmark": "core", "rows": [1, 2]}, path, announce=True)
    assert json.loads(path.read_text()) == {"benchmark": "core", "rows": [1, 2]}
    assert path.read_text().endswith("}\n")
    assert capsys.readouterr().out == f"wrote {path}\n"  # outside the repository: the full path
