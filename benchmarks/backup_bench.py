"""Backup and restore throughput of a volume through S3, beside a plain upload of the same data.

A raw block volume (1 GiB by default) is filled with random data through the CSI driver
(stage, publish, write to the published device), then:

1. backup: CreateSnapshot with a VolumeSnapshotClass of type S3 (``delete-local``) again and
   again, as the snapshotter does, until ``ready_to_use``; LINSTOR (the emulator) uploads the
   snapshot with boto3 to a moto server running as its own process;
2. restore: CreateVolume from the ``S3://`` snapshot id, which downloads the backup into the
   cluster and restores it; the restored volume's data is then read and compared (not timed);
3. beside them, the same bytes as a file: ``boto3`` ``upload_file`` to the same moto server,
   and ``download_file`` back, with boto3's default transfer settings.

    sudo .venv/bin/python benchmarks/backup_bench.py [--size-mib 1024] [--rounds 3]

Writes ``benchmarks/out/backup.json`` and the ``## Backups`` section of
``benchmarks/RESULTS.md``. Needs root (loop devices) and boto3 and moto (``pip install -e .[test]``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import LOCAL, MIB, RESULTS, load_average, write_json, write_results  # noqa: E402
from csi.generated import csi_pb2  # noqa: E402
from csi.testing import CsiClient, block_cap  # noqa: E402
from testkit.csi_cluster import cluster_with_driver, s3_class_parameters  # noqa: E402
from testkit.s3server import ACCESS_KEY, SECRET_KEY, S3Server  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "backup.json"
SECTION = "## Backups"
CHUNK = 8 * MIB
CAP = block_cap()


def s3_class(endpoint: str, remote: str, bucket: str) -> dict[str, str]:
    """An S3 VolumeSnapshotClass that keeps only the backup (``delete-local``), as measured here."""
    return s3_class_parameters(endpoint, remote, bucket, **{"delete-local": "true"})


class Volumes:
    """Raw block volumes through the driver: create, write or read the published device, delete."""

    def __init__(self, csi: CsiClient, workdir: Path) -> None:
        self.csi = csi
        self.workdir = workdir
        self.node_id = csi.node.NodeGetInfo(csi_pb2.NodeGetInfoRequest()).node_id

    def create(self, size: int, snapshot_id: str = "") -> str:
        request = csi_pb2.CreateVolumeRequest(
            name=f"pvc-{uuid.uuid4()}",
            volume_capabilities=[CAP],
            parameters={"linstor.csi.linbit.com/placementCount": "1"},
        )
        request.capacity_range.required_bytes = size
        if snapshot_id:
            request.volume_content_source.snapshot.snapshot_id = snapshot_id
        return self.csi.controller.CreateVolume(request).volume.volume_id

    def delete(self, volume_id: str) -> None:
        self.csi.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume_id))

    def _publish(self, volume_id: str) -> tuple[Path, Path, dict[str, str]]:
        ctl, node = self.csi.controller, self.csi.node
        ctx = dict(
            ctl.ControllerPublishVolume(
                csi_pb2.ControllerPublishVolumeRequest(
                    volume_id=volume_id, node_id=self.node_id, volume_capability=CAP
                )
            ).publish_context
        )
        stage = self.workdir / "stage" / volume_id
        target = self.workdir / "pods" / volume_id / "dev"
        stage.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        node.NodeStageVolume(
            csi_pb2.NodeStageVolumeRequest(
                volume_id=volume_id,
                publish_context=ctx,
                staging_target_path=str(stage),
                volume_capability=CAP,
            )
        )
        node.NodePublishVolume(
            csi_pb2.NodePublishVolumeRequest(
                volume_id=volume_id,
                publish_context=ctx,
                staging_target_path=str(stage),
                target_path=str(target),
                volume_capability=CAP,
            )
        )
        return stage, target, ctx

    def _unpublish(self, volume_id: str, stage: Path, target: Path) -> None:
        node = self.csi.node
        node.NodeUnpublishVolume(
            csi_pb2.NodeUnpublishVolumeRequest(volume_id=volume_id, target_path=str(target))
        )
        node.NodeUnstageVolume(
            csi_pb2.NodeUnstageVolumeRequest(volume_id=volume_id, staging_target_path=str(stage))
        )
        self.csi.controller.ControllerUnpublishVolume(
            csi_pb2.ControllerUnpublishVolumeRequest(volume_id=volume_id, node_id=self.node_id)
        )

    def fill(self, volume_id: str, source: Path) -> None:
        stage, target, _ = self._publish(volume_id)
        try:
            with open(source, "rb") as src, open(target, "r+b", buffering=0) as dev:
                while chunk := src.read(CHUNK):
                    dev.write(chunk)
                os.fsync(dev.fileno())
        finally:
            self._unpublish(volume_id, stage, target)

    def digest(self, volume_id: str, size: int) -> str:
        stage, target, _ = self._publish(volume_id)
        try:
            return sha256_of(target, size)
        finally:
            self._unpublish(volume_id, stage, target)


def sha256_of(path: Path, size: int) -> str:
    digest, left = hashlib.sha256(), size
    with open(path, "rb") as fh:
        while left > 0:
            chunk = fh.read(min(CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def backup(
    csi: CsiClient, volume_id: str, params: dict[str, str], timeout: float = 3600
) -> tuple[str, float, int]:
    """CreateSnapshot until ready, as the snapshotter polls; (snapshot id, seconds, calls)."""
    secrets = {"access-key": ACCESS_KEY, "secret-key": SECRET_KEY}
    request = csi_pb2.CreateSnapshotRequest(
        source_volume_id=volume_id,
        name=f"snapshot-{uuid.uuid4()}",
        parameters=params,
        secrets=secrets,
    )
    started = time.perf_counter()
    calls = 0
    while True:
        calls += 1
        made = csi.controller.CreateSnapshot(request).snapshot
        if made.ready_to_use:
            return made.snapshot_id, time.perf_counter() - started, calls
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"backup not ready after {timeout}s")
        time.sleep(0.25)


def plain(s3: S3Server, source: Path, scratch: Path) -> tuple[float, float]:
    """boto3 upload_file and download_file of the same bytes, default transfer settings."""
    client = s3.client()
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    started = time.perf_counter()
    client.upload_file(str(source), bucket, "volume.img")
    up = time.perf_counter() - started
    back = scratch / "download.img"
    started = time.perf_counter()
    client.download_file(bucket, "volume.img", str(back))
    down = time.perf_counter() - started
    back.unlink()
    client.delete_object(Bucket=bucket, Key="volume.img")
    return up, down


class Reshipments(logging.Handler):
    """Counts shipments the driver had to start again (a failed upload, e.g. the S3 server erred)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "backup failed; starting again":
            self.count += 1


def run(size: int, rounds: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="backup-bench-"))
    source = base / "volume.img"
    with open(source, "wb") as fh:
        for _ in range(size // CHUNK):
            fh.write(os.urandom(CHUNK))
    expected = sha256_of(source, size)
    s3 = S3Server(log_dir=base / "moto")
    s3.start()
    samples: list[dict[str, float]] = []
    reshipped = Reshipments()
    logging.getLogger("plugin.backups").addHandler(reshipped)
    try:
        with cluster_with_driver(base / "cluster", LOCAL) as cluster:
            csi = cluster.csi
            volumes = Volumes(csi, cluster.workdir)
            for i in range(rounds):
                bucket = f"bench-{uuid.uuid4().hex[:12]}"
                s3.client().create_bucket(Bucket=bucket)
                params = s3_class(s3.endpoint, f"bench-{i}", bucket)
                volume = volumes.create(size)
                volumes.fill(volume, source)
                before = reshipped.count
                snapshot_id, backup_s, polls = backup(csi, volume, params)
                volumes.delete(volume)  # delete-local: only the backup is left
                started = time.perf_counter()
                restored = volumes.create(size, snapshot_id)
                restore_s = time.perf_counter() - started
                if volumes.digest(restored, size) != expected:
                    raise RuntimeError("the restored volume holds other data than the backup")
                volumes.delete(restored)
                csi.controller.DeleteSnapshot(csi_pb2.DeleteSnapshotRequest(snapshot_id=snapshot_id))
                up, down = plain(s3, source, base)
                sample = {
                    "backup_s": backup_s,
                    "restore_s": restore_s,
                    "upload_s": up,
                    "download_s": down,
                    "reshipped": reshipped.count - before,
                }
                samples.append(sample)
                print(
                    f"round {i + 1}: backup {backup_s:.2f}s ({polls} CreateSnapshot calls), restore "
                    f"{restore_s:.2f}s, boto3 upload {up:.2f}s, download {down:.2f}s",
                    flush=True,
                )
    finally:
        s3.stop()
        shutil.rmtree(base, ignore_errors=True)
    medians = {k: statistics.median(s[k] for s in samples) for k in samples[0] if k != "reshipped"}
    return {"size_bytes": size, "rounds": rounds, "samples": samples, "median_s": medians}


def mib_s(size: int, seconds: float) -> float:
    return round(size / MIB / seconds, 1) if seconds > 0 else 0.0


def results_section(result: dict[str, Any]) -> str:
    size, med = result["size_bytes"], result["median_s"]
    rows = [
        ("backup: CreateSnapshot (S3 class) until ready_to_use", med["backup_s"]),
        ("plain: boto3 upload_file of the same bytes", med["upload_s"]),
        ("restore: CreateVolume from the S3:// id (download + restore)", med["restore_s"]),
        ("plain: boto3 download_file of the same bytes", med["download_s"]),
    ]
    lines = [
        SECTION,
        "",
        f"`benchmarks/backup_bench.py` (`sudo .venv/bin/python benchmarks/backup_bench.py`), "
        f"{result['date']}, {result['machine']}, load average {result['load_at_start']} at the start. "
        f"A {size // MIB} MiB raw block volume of random data, written through the driver; moto in server "
        "mode as the S3 server (its own process, on this host); the emulator uploads and downloads with "
        "boto3 as LINSTOR's satellites would with their S3 client. Median of "
        f"{result['rounds']} rounds.",
        "",
        "| path | median s | MiB/s |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {seconds:.2f} | {mib_s(size, seconds)} |" for label, seconds in rows]
    lines += [
        "",
        f"Backup reaches {mib_s(size, med['backup_s'])} MiB/s against {mib_s(size, med['upload_s'])} MiB/s "
        f"for the plain upload (ratio {med['upload_s'] / med['backup_s']:.2f}); restore reaches "
        f"{mib_s(size, med['restore_s'])} MiB/s against {mib_s(size, med['download_s'])} MiB/s for the plain "
        f"download (ratio {med['download_s'] / med['restore_s']:.2f}). The backup also takes the LINSTOR "
        "snapshot, writes LINSTOR's meta object and is seen done only at the snapshotter's next poll "
        "(every 0.25 s here); the restore also makes the volume definition, restores the downloaded "
        "snapshot into the new volume and removes the download. boto3's `download_file` fetches in "
        "parallel ranged GETs (HTTP 206 in moto's log); the emulator's restore reads each object with one "
        "streaming GET.",
        "",
    ]
    lines[-1:-1] = [
        "",
        "Per round (s): "
        + "; ".join(
            f"{i + 1}: backup {r['backup_s']:.1f}, upload {r['upload_s']:.1f}, restore {r['restore_s']:.1f}, "
            f"download {r['download_s']:.1f}"
            for i, r in enumerate(result["samples"])
        )
        + ". The driver's own work per poll is one snapshot view and one snapshot read; the shipment "
        "itself is the emulator's (8 MiB parts, 4 in parallel, where `upload_file` runs 10).",
    ]
    again = [s.get("reshipped", 0) for s in result["samples"]]
    if any(again):
        lines[-1:-1] = [
            "",
            f"Shipments started again by the driver, per round: {again} (the first upload failed, e.g. "
            "moto answered a part upload with an error; the next CreateSnapshot call shipped the same "
            "snapshot again). Those rounds' backup times include the failed attempt.",
        ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="volume size (a multiple of 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON to write")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the RESULTS.md to update")
    parser.add_argument("--results-only", action="store_true", help="rewrite the section from the last JSON")
    args = parser.parse_args()
    if args.results_only:
        write_results(results_section(json.loads(args.out.read_text())), args.results)
        return 0
    if os.geteuid() != 0:
        print("backup_bench: needs root (loop devices)", file=sys.stderr)
        return 1
    if args.size_mib <= 0 or args.size_mib % (CHUNK // MIB):
        print(
            f"backup_bench: --size-mib must be a positive multiple of {CHUNK // MIB}",
            file=sys.stderr,
        )
        return 2
    load = load_average()
    result = run(args.size_mib * MIB, args.rounds)
    result.update(
        date=datetime.now(UTC).date().isoformat(),
        machine=f"Python {platform.python_version()}, {os.cpu_count()} CPUs, shared machine",
        load_at_start=load,
    )
    write_json(result, args.out)
    write_results(results_section(result), args.results)
    print(results_section(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
