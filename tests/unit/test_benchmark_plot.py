"""The benchmark plot draws what the recorded JSON says, and parses as SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmarks import plot

SVG = "{http://www.w3.org/2000/svg}"


def write(dir_: Path, name: str, data: dict) -> None:  # type: ignore[type-arg]
    (dir_ / f"{name}.json").write_text(json.dumps(data))


def test_core_and_csi_panels_pair_the_plugin_with_its_floor(tmp_path: Path) -> None:
    write(
        tmp_path,
        "core",
        {
            "operations": {
                "create": {"rest_calls": 2, "service": {"median_ms": 20.5}, "floor": {"median_ms": 19.5}}
            }
        },
    )
    write(
        tmp_path,
        "csi",
        {
            "controller": {
                "latency_ms": 20,
                "rows": [
                    {"concurrency": 8, "driver": {"pairs_per_s": 40.0}, "rest_floor": {"pairs_per_s": 35.0}}
                ],
            }
        },
    )
    panels = plot.panels_from(tmp_path)
    assert [p.series for p in panels] == [("VolumeService", "bare Session"), ("driver", "REST floor")]
    assert panels[0].rows == (("create (2 REST calls)", (20.5, 19.5)),)
    assert panels[1].rows == (("CreateVolume+DeleteVolume, concurrency 8", (40.0, 35.0)),)

    root = ET.fromstring(plot.render(panels))
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "20.5 ms" in texts and "19.5 ms" in texts and "40 pairs/s" in texts
    widths = sorted(float(r.get("width", 0)) for r in root.iter(f"{SVG}rect") if r.get("height") == "10")
    assert widths[-1] == plot.PLOT_WIDTH  # the largest value of a panel spans the plot


def test_missing_json_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        plot.main(["--out-dir", str(tmp_path), "--svg", str(tmp_path / "x.svg")])
    assert "run the benchmarks first" in capsys.readouterr().err
    assert not (tmp_path / "x.svg").exists()


def test_scale_panel_shows_each_call_at_each_size(tmp_path: Path) -> None:
    figure = lambda ms: {"median_ms": ms}  # noqa: E731
    rows = [
        {
            "volumes": n,
            "csi_list_volumes_all_pages": figure(n / 10),
            "docker_list": figure(n / 50),
            "csi_get_capacity": figure(2.0),
            "csi_create_volume": figure(40.0),
        }
        for n in (100, 1000)
    ]
    write(tmp_path, "scale", {"rows": rows})
    (panel,) = plot.panels_from(tmp_path)
    assert panel.rows[:2] == (
        ("CSI ListVolumes, all pages, 100 volumes", (10.0,)),
        ("CSI ListVolumes, all pages, 1,000 volumes", (100.0,)),
    )
    assert ("CSI CreateVolume, 1,000 volumes", (40.0,)) in panel.rows
    ET.fromstring(plot.render([panel]))
