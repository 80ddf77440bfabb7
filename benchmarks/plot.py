"""Draw the recorded benchmark figures as one SVG, with no plotting library.

Reads the JSON files the benchmarks write to ``benchmarks/out/`` and draws grouped
horizontal bars: the plugin beside its floor wherever a benchmark measured one.

    .venv/bin/python benchmarks/plot.py            # writes benchmarks/results.svg
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

HERE = Path(__file__).resolve().parent
COLOURS = ("#2b6cb0", "#a0aec0")  # the plugin, then its floor
BAR_HEIGHT = 12
LABEL_WIDTH = 300
PLOT_WIDTH = 420
SCALE_FIGURES = (
    ("csi_list_volumes_all_pages", "CSI ListVolumes, all pages"),
    ("docker_list", "Docker List"),
    ("csi_get_capacity", "CSI GetCapacity"),
    ("csi_create_volume", "CSI CreateVolume"),
)


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    series: tuple[str, ...]  # legend names, in colour order
    rows: tuple[tuple[str, tuple[float, ...]], ...]  # label, one value per series


def _load(out_dir: Path, name: str) -> dict | None:  # type: ignore[type-arg]
    path = out_dir / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def panels_from(out_dir: Path) -> list[Panel]:
    """One panel per benchmark whose JSON is present."""
    panels: list[Panel] = []
    if core := _load(out_dir, "core"):
        rows = tuple(
            (
                f"{op} ({data['rest_calls']} REST calls)",
                (data["service"]["median_ms"], data["floor"]["median_ms"]),
            )
            for op, data in core["operations"].items()
        )
        panels.append(
            Panel("Core: VolumeService vs. bare REST, median", "ms", ("VolumeService", "bare Session"), rows)
        )
    if csi := _load(out_dir, "csi"):
        rows = tuple(
            (
                f"CreateVolume+DeleteVolume, concurrency {row['concurrency']}",
                (row["driver"]["pairs_per_s"], row["rest_floor"]["pairs_per_s"]),
            )
            for row in csi["controller"]["rows"]
        )
        latency = csi["controller"]["latency_ms"]
        panels.append(
            Panel(
                f"CSI: pairs per second ({latency} ms controller latency)",
                "pairs/s",
                ("driver", "REST floor"),
                rows,
            )
        )
    if docker := _load(out_dir, "docker"):
        life = docker["lifecycle"]
        rows = (
            (f"List, {docker['volumes']} volumes", (docker["list"]["median_ms"],)),
            ("Get", (docker["get"]["median_ms"],)),
            *(
                (f"{step.capitalize()}", (life[step]["median_ms"],))
                for step in ("create", "mount", "unmount", "remove")
            ),
        )
        panels.append(Panel("Docker plugin: VolumeDriver calls, median", "ms", ("plugin",), rows))
    if emulator := _load(out_dir, "emulator"):
        rows = tuple(
            (label, (data["median_ms"],))
            for group in ("simple", "listing")
            for label, data in emulator.get(group, {}).items()
        )
        panels.append(Panel("Emulator: its own latency per call, median", "ms", ("emulator",), rows))
    if scale := _load(out_dir, "scale"):
        rows = tuple(
            (f"{label}, {row['volumes']:,} volumes", (row[key]["median_ms"],))
            for key, label in SCALE_FIGURES
            for row in scale["rows"]
        )
        panels.append(Panel("Scale: calls by number of volumes, median", "ms", ("driver / plugin",), rows))
    return panels


def render(panels: list[Panel]) -> str:
    parts: list[str] = []
    y = 20
    for panel in panels:
        peak = max((v for _, values in panel.rows for v in values), default=1.0) or 1.0
        parts.append(f'<text x="10" y="{y}" font-weight="bold">{escape(panel.title)}</text>')
        y += 16  # the legend goes on its own line, under the title
        legend_x = LABEL_WIDTH
        for name, colour in zip(panel.series, COLOURS, strict=False):
            parts.append(f'<rect x="{legend_x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
            parts.append(f'<text x="{legend_x + 14}" y="{y}">{escape(name)}</text>')
            legend_x += 14 + 8 * len(name) + 16
        y += 10
        for label, values in panel.rows:
            row_top = y
            for index, value in enumerate(values):
                width = max(1.0, PLOT_WIDTH * value / peak)
                bar_y = y + index * BAR_HEIGHT
                colour = COLOURS[index % len(COLOURS)]
                parts.append(
                    f'<rect x="{LABEL_WIDTH}" y="{bar_y}" width="{width:.1f}" '
                    f'height="{BAR_HEIGHT - 2}" fill="{colour}"/>'
                )
                parts.append(
                    f'<text x="{LABEL_WIDTH + width + 4:.1f}" y="{bar_y + BAR_HEIGHT - 3}">'
                    f"{value:g} {panel.unit}</text>"
                )
            label_y = row_top + (len(values) * BAR_HEIGHT) / 2 + 4
            parts.append(
                f'<text x="{LABEL_WIDTH - 6}" y="{label_y:.1f}" text-anchor="end">{escape(label)}</text>'
            )
            y += len(values) * BAR_HEIGHT + 6
        y += 28
    width = LABEL_WIDTH + PLOT_WIDTH + 110
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        f'font-family="sans-serif" font-size="11">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(parts) + "\n</svg>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", type=Path, default=HERE / "out", help="where the benchmark JSON files are"
    )
    parser.add_argument("--svg", type=Path, default=HERE / "results.svg", help="the picture to write")
    args = parser.parse_args(argv)
    panels = panels_from(args.out_dir)
    if not panels:
        parser.error(f"no benchmark JSON in {args.out_dir}; run the benchmarks first")
    args.svg.write_text(render(panels))
    print(f"wrote {args.svg} ({len(panels)} panels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
