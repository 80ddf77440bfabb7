"""Backups in S3: upload (full or incremental), the controller's list and info, restore, delete.

Objects are named as LINSTOR names them (:mod:`emulator.backup_names`): one object per volume
with the data stream (:mod:`emulator.backup_stream`), then one meta object (JSON, the
controller's ``BackupMetaDataPojo`` fields) that marks the backup complete and names the backup
it is based on.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

from emulator import backup_names as bn
from emulator import backup_stream as bs
from emulator import backups as bk
from emulator import names
from emulator import state as st
from emulator.core import Emulator
from emulator.s3_target import Aborted, S3Error, S3Target

log = logging.getLogger("emulator.backups")


# ---------------------------------------------------------------------- upload


def start_upload(emu: Emulator, rd: st.ResourceDefinition, snap: st.Snapshot, remote: dict[str, Any]) -> None:
    """Begin shipping ``snap`` (its props already say ``Shipping``) in the background."""
    job = bk.Job("ship", names.key(rd.name), names.key(snap.name), names.key(remote["name"]))
    bk.engine_of(emu).start(job, lambda j: _upload(emu, j))


def _upload(emu: Emulator, job: bk.Job) -> None:
    engine = bk.engine_of(emu)
    with engine.queue_lock(job.rd_key, job.remote_key):
        plan = bk.mutate(emu, job.rd_key, lambda rd: _upload_plan(emu, rd, job))
        if plan is None:
            return
        remote, name, node, vols, prev = plan
        made: list[str] = []
        try:
            target = S3Target(remote)
            base = _usable_base(target, prev, vols)
            backups: dict[str, list[dict[str, Any]]] = {}
            for nr, (path, size_kib, base_path) in sorted(vols.items()):
                key = name.volume_key(nr)
                made.append(key)
                # Buffered, so each read fills a whole part (S3 parts but the last are >= 5 MiB).
                reader = io.BufferedReader(
                    bs.StreamReader(
                        bs.pieces(path, size_kib * 1024, base_path if base is not None else None)
                    ),
                    buffer_size=1 << 20,
                )
                target.upload(key, reader, job.stop.is_set)
                backups[str(nr)] = [{"name": key, "finishedTimestamp": st.now_ms(), "node": node}]
            if job.stop.is_set():
                raise Aborted("shipment aborted")
            meta = bk.mutate(emu, job.rd_key, lambda rd: _meta(emu, rd, job, name, base, backups, node))
            target.put_bytes(name.meta_key, json.dumps(meta).encode())
        except Aborted:
            _cleanup(remote, made)
            bk.mutate(emu, job.rd_key, lambda rd: _end(rd, job, remote["name"], bn.ABORTED))
            log.warning("shipment of %s to %s aborted", name.id, remote["name"])
            return
        except (S3Error, OSError, bs.StreamError) as exc:
            _cleanup(remote, made)
            bk.mutate(emu, job.rd_key, lambda rd: _end(rd, job, remote["name"], bn.FAILED))
            log.warning("shipment of %s to %s failed: %s", name.id, remote["name"], exc)
            return
        bk.mutate(emu, job.rd_key, lambda rd: _end(rd, job, remote["name"], bn.SUCCESS))
        log.info("shipped %s to %s (%s)", name.id, remote["name"], "incremental" if base else "full")


def _upload_plan(emu: Emulator, rd: st.ResourceDefinition | None, job: bk.Job) -> Any:
    snap = bk.snapshot_of(rd, job.snap_key)
    remote = emu.state.remotes.get(job.remote_key)
    if rd is None or snap is None or remote is None:
        return None
    if bk.source_status(snap, remote["name"]) != bn.SHIPPING or job.stop.is_set():
        if snap is not None and bk.source_status(snap, remote["name"]) == bn.SHIPPING:
            bk.end_source(snap, remote["name"], bn.ABORTED)
        return None
    start = int(snap.props[bn.source_key(remote["name"], bn.START)])
    name = bn.BackupName(rd.name, start, snap.name)
    prev_name = snap.props.get(bn.source_key(remote["name"], bn.PREV), "")
    prev = rd.snapshots.get(names.key(prev_name)) if prev_name else None
    prev_ok = (
        prev is not None
        and "DELETE" not in prev.flags
        and bk.source_status(prev, remote["name"]) == bn.SUCCESS
        and all(
            str(n) in prev.volumes and prev.volumes[str(n)].size_kib == sv.size_kib
            for n, sv in ((int(k), v) for k, v in snap.volumes.items())
        )
    )
    prev_id = None
    if prev_ok and prev is not None:
        prev_start = int(prev.props.get(bn.source_key(remote["name"], bn.START), "0"))
        prev_id = bn.BackupName(rd.name, prev_start, prev.name)
    vols: dict[int, tuple[Path | None, int, Path | None]] = {}
    for sv in snap.volumes.values():
        base_sv = prev.volumes.get(str(sv.number)) if prev_ok and prev is not None else None
        vols[sv.number] = (
            Path(sv.file) if sv.file else None,
            sv.size_kib,
            Path(base_sv.file) if base_sv is not None and base_sv.file else None,
        )
    node = snap.nodes[0] if snap.nodes else emu.config.local_node
    return dict(remote), name, node, vols, prev_id


def _usable_base(target: S3Target, prev: bn.BackupName | None, vols: dict[int, Any]) -> bn.BackupName | None:
    """Incremental only while the previous backup is still in the bucket and every base file is here."""
    if prev is None or any(base is None or not base.exists() for _p, _s, base in vols.values()):
        return None
    return prev if prev.meta_key in target.keys(prev.meta_key) else None


def _meta(
    emu: Emulator,
    rd: st.ResourceDefinition | None,
    job: bk.Job,
    name: bn.BackupName,
    base: bn.BackupName | None,
    backups: dict[str, list[dict[str, Any]]],
    node: str,
) -> dict[str, Any]:
    from emulator.ops import cluster_id

    snap = bk.snapshot_of(rd, job.snap_key)
    vlm_dfns = {}
    if snap is not None:
        for sv in snap.volumes.values():
            vlm_dfns[str(sv.number)] = {"props": dict(sv.props), "flags": 0, "size": sv.size_kib}
    pool = snap.pools.get(names.key(node), emu.config.pool_name) if snap is not None else emu.config.pool_name
    return {
        "rscName": name.rsc,
        "nodeName": node,
        "startTimestamp": name.start_ms,
        "finishTimestamp": st.now_ms(),
        "basedOn": base.meta_key if base is not None else None,
        "layerData": {"kind": "STORAGE", "rscNameSuffix": "", "storPoolName": pool},
        "rscDfn": {"props": dict(snap.rd_props) if snap else {}, "flags": 0, "vlmDfns": vlm_dfns},
        "rsc": {"props": {}, "flags": 0, "vlms": {k: {"props": {}, "flags": 0} for k in vlm_dfns}},
        "luksInfo": None,
        "backups": backups,
        "clusterId": cluster_id(emu),
        "snapDfnUuid": snap.uuid if snap else "",
    }


def _end(rd: st.ResourceDefinition | None, job: bk.Job, remote: str, status: str) -> None:
    snap = bk.snapshot_of(rd, job.snap_key)
    if snap is None:
        return
    bk.end_source(snap, remote, status)
    if status == bn.SUCCESS and rd is not None:
        rd.props[bn.source_key(remote, bn.LAST_SNAPSHOT)] = snap.name


def _cleanup(remote: dict[str, Any], keys: list[str]) -> None:
    """Remove what a failed or aborted shipment wrote (best effort: the remote may be the problem)."""
    try:
        target = S3Target(remote)
        for key in keys:
            target.delete(key)
        for key in keys:
            target.abort_uploads(key)
    except S3Error as exc:
        log.info("could not clean up after the shipment: %s", exc)


def recover_upload(emu: Emulator, rd_key: str, snap_key: str, remote: dict[str, Any]) -> None:
    """An upload cut off by a restart: complete if its meta object made it, else aborted and cleaned up."""

    def work(job: bk.Job) -> None:
        def plan(rd: st.ResourceDefinition | None) -> bn.BackupName | None:
            snap = bk.snapshot_of(rd, snap_key)
            if rd is None or snap is None:
                return None
            start = int(snap.props.get(bn.source_key(remote["name"], bn.START), "0"))
            return bn.BackupName(rd.name, start, snap.name)

        name = bk.mutate(emu, rd_key, plan)
        if name is None:
            return
        status = bn.ABORTED
        try:
            target = S3Target(remote)
            if name.meta_key in target.keys(name.meta_key):
                status = bn.SUCCESS
            else:
                keys = [k for k in target.keys(name.rsc + "_") if (p := bn.parse_volume(k)) and p[0] == name]
                _cleanup(remote, keys)
                target.abort_uploads(name.rsc + "_")
        except S3Error as exc:
            log.warning("could not check the interrupted shipment %s: %s", name.id, exc)
        bk.mutate(emu, rd_key, lambda rd: _end(rd, job, remote["name"], status))
        log.warning("shipment %s to %s was interrupted by a restart: %s", name.id, remote["name"], status)

    job = bk.Job("ship", rd_key, snap_key, names.key(remote["name"]))
    bk.engine_of(emu).start(job, work)


# ---------------------------------------------------------------------- list


def read_metas(target: S3Target, keys: list[str], rsc: str = "", snap: str = "") -> dict[str, dict[str, Any]]:
    """Meta objects (of ``rsc``, of ``snap``) by key; unreadable ones are left out, as the controller does."""
    out = {}
    for key in keys:
        name = bn.parse_meta(key)
        if name is None or (rsc and name.rsc != rsc) or (snap and name.snap.lower() != snap.lower()):
            continue
        try:
            meta = json.loads(target.get_bytes(key))
        except (S3Error, ValueError) as exc:
            log.warning("could not read the meta object %s: %s", key, exc)
            continue
        if isinstance(meta, dict):
            out[key] = meta
    return out


def backup_from_meta(key: str, meta: dict[str, Any], keys: set[str]) -> tuple[dict[str, Any], set[str]]:
    """The controller's ``Backup`` JSON of a complete backup, and the volume objects it owns."""
    name = bn.parse_meta(key)
    assert name is not None
    restorable = True
    vlms, owned = [], set()
    for nr, infos in sorted((meta.get("backups") or {}).items(), key=lambda kv: int(kv[0])):
        for info in infos or []:
            vkey = info.get("name", "")
            parsed = bn.parse_volume(vkey)
            if vkey not in keys or parsed is None or parsed[1] != int(nr):
                restorable = False
                continue
            done = int(info.get("finishedTimestamp") or 0)
            vlms.append(
                {
                    "vlm_nr": int(nr),
                    "finished_time": bn.stamp(done),
                    "finished_timestamp": done,
                    "s3": {"key": vkey},
                }
            )
            owned.add(vkey)
    start, finish = int(meta.get("startTimestamp") or 0), int(meta.get("finishTimestamp") or 0)
    return (
        {
            "id": key[: -len(bn.META_SUFFIX)],
            "start_time": bn.stamp(start),
            "start_timestamp": start,
            "finished_time": bn.stamp(finish),
            "finished_timestamp": finish,
            "origin_rsc": name.rsc,
            "origin_snap": name.snap,
            "origin_node": meta.get("nodeName"),
            "vlms": vlms,
            "success": True,
            "shipping": False,
            "restorable": restorable,
            "s3": {"meta_name": key},
            "based_on_id": meta.get("basedOn"),
        },
        owned,
    )


def local_status(snap: st.Snapshot | None, remote: str) -> tuple[bool | None, bool | None, str | None]:
    """(shipping, success, node) of a backup without meta object, from its local snapshot."""
    if snap is None:
        return None, None, None
    status = bk.source_status(snap, remote) or bk.target_status(snap)
    if not status:
        return None, None, None
    node = (
        snap.nodes[0] if snap.nodes and bk.source_status(snap, remote) in (bn.SHIPPING, bn.SUCCESS) else None
    )
    if status == bn.SHIPPING:
        return True, None, node
    if status == bn.SUCCESS:
        return False, True, node
    return False, False, None


def partial_backup(
    name: bn.BackupName, vlm_keys: dict[int, str], snap: st.Snapshot | None, remote: str
) -> dict:
    shipping, success, node = local_status(snap, remote)
    return {
        "id": name.id,
        "start_time": bn.stamp(name.start_ms),
        "start_timestamp": name.start_ms,
        "origin_rsc": name.rsc,
        "origin_snap": name.snap,
        "origin_node": node,
        "vlms": [{"vlm_nr": nr, "s3": {"key": k}} for nr, k in sorted(vlm_keys.items())],
        "shipping": shipping,
        "success": success,
        "restorable": False,
    }


# ---------------------------------------------------------------------- chains


def chain_of(target: S3Target, name: bn.BackupName) -> list[tuple[bn.BackupName, dict[str, Any]]]:
    """The backup and every one it is based on, the full one first."""
    out: list[tuple[bn.BackupName, dict[str, Any]]] = []
    key: str | None = name.meta_key
    seen = set()
    while key:
        if key in seen:
            raise S3Error(f"The meta object {key} is part of a loop of base backups.")
        seen.add(key)
        parsed = bn.parse_meta(key)
        if parsed is None:
            raise S3Error(f"The base backup {key} does not have a LINSTOR backup name.")
        try:
            meta = json.loads(target.get_bytes(key))
        except ValueError:
            raise S3Error(f"Failed to parse meta file {key}") from None
        out.append((parsed, meta))
        key = meta.get("basedOn")
    out.reverse()
    return out


def latest(keys: list[str], rsc: str, snap: str = "") -> bn.BackupName | None:
    found = [
        n
        for k in keys
        if (n := bn.parse_meta(k)) is not None
        and n.rsc == rsc
        and (not snap or n.snap.lower() == snap.lower())
    ]
    return max(found, key=lambda n: n.start_ms) if found else None


# ---------------------------------------------------------------------- restore


def start_download(
    emu: Emulator,
    rd: st.ResourceDefinition,
    snap: st.Snapshot,
    remote: dict[str, Any],
    chain: list[bn.BackupName],
    after: Any,
) -> None:
    """Fill ``snap``'s files from the chain in the background, then run ``after(emu, rd_key, snap_key)``."""
    job = bk.Job("restore", names.key(rd.name), names.key(snap.name), names.key(remote["name"]))
    files = {sv.number: Path(sv.file) for sv in snap.volumes.values() if sv.file}

    def work(job: bk.Job) -> None:
        status = bn.SUCCESS
        try:
            target = S3Target(dict(remote))
            for nr, dest in sorted(files.items()):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.unlink(missing_ok=True)
                for name in chain:
                    applier = bs.Applier(dest)
                    try:
                        for piece in target.download(name.volume_key(nr)):
                            if job.stop.is_set():
                                raise Aborted("restore aborted")
                            applier.feed(piece)
                        applier.finish()
                    finally:
                        applier.close()
        except Aborted:
            status = bn.ABORTED
        except (S3Error, OSError, bs.StreamError) as exc:
            log.warning("restore of %s/%s failed: %s", job.rd_key, job.snap_key, exc)
            status = bn.FAILED
        bk.mutate(emu, job.rd_key, lambda rd: _end_download(emu, rd, job, status))
        if status == bn.SUCCESS and after is not None:
            after(emu, job.rd_key, job.snap_key)

    bk.engine_of(emu).start(job, work)


def _end_download(emu: Emulator, rd: st.ResourceDefinition | None, job: bk.Job, status: str) -> None:
    snap = bk.snapshot_of(rd, job.snap_key)
    if snap is None:
        return
    bk.end_target(snap, status)
    for sv in snap.volumes.values():
        if sv.file and Path(sv.file).exists():
            sv.allocated_kib = emu.storage.allocated_kib(Path(sv.file))
