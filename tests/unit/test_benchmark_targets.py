"""The targets table says measured / target for every target, and what is not measured yet."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import targets


def test_every_target_is_listed_even_without_measurements(tmp_path: Path) -> None:
    rows = targets.rows_from(tmp_path)
    assert len(rows) == 5
    assert all(measured == targets.NOT_MEASURED for _, measured, _, _ in rows)


def test_measured_figures_are_judged_against_their_targets(tmp_path: Path) -> None:
    (tmp_path / "csi.json").write_text(
        json.dumps(
            {
                "node": {
                    "driver_stage_publish": {"median_ms": 22.0},
                    "shell_mkfs_mount_bind": {"median_ms": 20.0},
                },
                "controller": {
                    "latency_ms": 20,
                    "rows": [
                        {
                            "concurrency": 1,
                            "driver": {"pairs_per_s": 9.0},
                            "rest_floor": {"pairs_per_s": 10.0},
                        }
                    ],
                },
            }
        )
    )
    (tmp_path / "core.json").write_text(json.dumps({"operations": {"delete": {"rest_calls": 3}}}))
    by_name = {t: (m, v) for t, m, _, v in targets.rows_from(tmp_path)}
    node = next(k for k in by_name if k.startswith("NodeStage"))
    assert by_name[node] == ("1.10x (22.0 vs 20.0 ms)", "met")
    pairs = next(k for k in by_name if "concurrency 1" in k)
    assert by_name[pairs] == ("0.900 of the floor", "**not met**")
    assert by_name["DeleteVolume REST calls, steady state"] == ("3", "**not met**")


def test_deletes_are_judged_by_the_drivers_own_count_when_the_csi_run_has_it(tmp_path: Path) -> None:
    (tmp_path / "core.json").write_text(json.dumps({"operations": {"delete": {"rest_calls": 2}}}))
    csi = {"controller": {"latency_ms": 20, "rows": [], "driver_delete_rest_calls": 3.0}}
    (tmp_path / "csi.json").write_text(json.dumps(csi))
    by_name = {t: (m, v) for t, m, _, v in targets.rows_from(tmp_path)}
    assert by_name["DeleteVolume REST calls through the CSI driver, steady state"] == ("3", "**not met**")
    assert "DeleteVolume REST calls, steady state" not in by_name  # the core's count is not the driver's


def test_the_section_replaces_itself_and_leaves_the_others(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nintro\n\n## Core\n\ncore text\n")
    targets.write_section(targets.section(tmp_path, "2 CPUs"), results)
    targets.write_section(targets.section(tmp_path, "2 CPUs"), results)
    text = results.read_text()
    assert text.count("## Targets") == 1 and "Machine: 2 CPUs." in text
    assert text.index("intro") < text.index("## Targets") < text.index("## Core")
    assert text.endswith("## Core\n\ncore text\n")


def test_docker_targets_judge_the_plugin_time_when_it_was_measured(tmp_path: Path) -> None:
    def docker(list_figures: dict[str, float], get_figures: dict[str, float]) -> dict[str, object]:
        return {
            "volumes": 1000,
            "list": {**list_figures, "linstor_calls_per_request": 1.0},
            "get": get_figures,
        }

    (tmp_path / "docker.json").write_text(
        json.dumps(docker({"median_ms": 60.0, "plugin_ms": 15.0}, {"median_ms": 9.0, "plugin_ms": 6.0}))
    )
    by_name = {t: (m, v) for t, m, _, v in targets.rows_from(tmp_path)}
    assert by_name["Docker `List` at 1,000 volumes, plugin time"] == (
        "15.0 ms (of 60.0 ms in all), 1.0 REST calls",
        "met",
    )
    assert by_name["Docker `Get` at 1,000 volumes, plugin time"] == (
        "6.0 ms (of 9.0 ms in all)",
        "**not met**",
    )
    # A run recorded before the plugin's own time was measured is judged on its total.
    (tmp_path / "docker.json").write_text(json.dumps(docker({"median_ms": 18.0}, {"median_ms": 4.0})))
    by_name = {t: (m, v) for t, m, _, v in targets.rows_from(tmp_path)}
    assert by_name["Docker `List` at 1,000 volumes, plugin time"] == ("18.0 ms, 1.0 REST calls", "met")


def test_the_node_row_shows_the_guarded_script_beside_the_plain_one(tmp_path: Path) -> None:
    node = {
        "driver_stage_publish": {"median_ms": 24.0},
        "shell_mkfs_mount_bind": {"median_ms": 16.0},
        "shell_guarded_mkfs_mount_bind": {"median_ms": 20.0},
    }
    (tmp_path / "csi.json").write_text(json.dumps({"node": node}))
    by_name = {t: (m, v) for t, m, _, v in targets.rows_from(tmp_path)}
    measured, verdict = by_name["NodeStage+NodePublish of a fresh ext4 volume vs. the shell script"]
    assert measured == (
        "1.50x (24.0 vs 16.0 ms); 1.20x the script with the driver's `blkid -p` guard (20.0 ms)"
    )
    assert verdict == "**not met**"  # judged against the plain script only


def test_the_round_by_round_ratio_is_shown_beside_the_judged_ratio_of_medians(tmp_path: Path) -> None:
    node = {
        "driver_stage_publish": {"median_ms": 26.0},
        "shell_mkfs_mount_bind": {"median_ms": 20.0},
        "per_round_ratio_median": 1.15,
    }
    (tmp_path / "csi.json").write_text(json.dumps({"node": node}))
    by_name = {t: (m, v) for t, m, _, v in targets.rows_from(tmp_path)}
    row = next(k for k in by_name if k.startswith("NodeStage"))
    assert by_name[row] == ("1.30x (26.0 vs 20.0 ms); round by round, median 1.15x", "**not met**")
