"""LINSTOR-to-LINSTOR shipping: ``POST /v1/remotes/{remote}/backups/ship`` and the receiving side.

The source emulator sends the snapshot to the emulator at the remote's URL. Controllers agree
on a shipment over their ``/v1/internal/backups/*`` endpoints and satellites move the data
with socat; the emulator does both over an internal HTTP API of its own (a deviation, see
README): ``POST /_emu/l2l/begin`` (JSON: what comes, which base snapshots the source still
has), ``PUT /_emu/l2l/data`` (the volume streams of :mod:`emulator.backup_stream`, in pieces),
``POST /_emu/l2l/done`` and ``POST /_emu/l2l/abort``. As on a real target, the sender's
cluster id must belong to a LINSTOR remote the target knows, or the answer is 976
(``FAIL_BACKUP_UNKNOWN_CLUSTER``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import requests

from emulator import backup_names as bn
from emulator import backup_stream as bs
from emulator import backups as bk
from emulator import body, names, ops, remotes, snapshots
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator
from emulator.definitions import new_rd
from emulator.routing import Request

log = logging.getLogger("emulator.backups")
FAIL_BACKUP_UNKNOWN_CLUSTER = 976
TIMEOUT = (5.0, 60.0)
CHUNK = 8 * 1024 * 1024
#: snapshot properties the target keeps about the source (the controller's names)
FROM_CLUSTER = "Backup/FromClusterUUID"
SOURCE_SNAP_UUID = "Backup/Target/SourceSnapDfnUUID"

BACKUP_SHIP = body.Obj(
    {
        "src_node_name": body.STR,
        "src_rsc_name": body.STR,
        "dst_rsc_name": body.STR,
        "dst_node_name": body.STR,
        "dst_net_if_name": body.STR,
        "dst_stor_pool": body.STR,
        "stor_pool_rename": body.PROPS,
        "download_only": body.BOOL,
        "force_restore": body.BOOL,
        "allow_incremental": body.BOOL,
        "dst_rsc_grp": body.STR,
        "force_mv_rsc_grp": body.BOOL,
        "src_snap_name": body.STR,
        "dst_snap_name": body.STR,
    }
)


class RemoteFailure(Exception):
    """The target emulator could not be reached or refused; ``entries`` say why."""

    def __init__(self, entries: list[rc.Entry]) -> None:
        super().__init__(entries[0].message if entries else "remote failure")
        self.entries = entries


def _post(url: str, path: str, **kw: Any) -> Any:
    """A call to the target emulator; failures become LINSTOR entries (the target's own, if it sent some)."""
    method = kw.pop("method", "POST")
    try:
        answer = requests.request(method, url + path, timeout=TIMEOUT, **kw)
    except requests.RequestException as exc:
        raise RemoteFailure(
            [
                remotes.backup_error(
                    rc.FAIL_UNKNOWN_ERROR,
                    f"The LINSTOR remote at {url} could not be reached: {type(exc).__name__}",
                )
            ]
        ) from None
    try:
        data = answer.json()
    except ValueError:
        data = None
    if answer.status_code != 200:
        entries = []
        for e in data if isinstance(data, list) else []:
            if isinstance(e, dict) and "ret_code" in e:
                entries.append(rc.Entry(0, 0, str(e.get("message", "")), raw_code=int(e["ret_code"])))
        raise RemoteFailure(
            entries
            or [
                remotes.backup_error(
                    rc.FAIL_UNKNOWN_ERROR,
                    f"The LINSTOR remote at {url} answered HTTP {answer.status_code}.",
                )
            ]
        )
    return data


# ---------------------------------------------------------------------- source


def ship(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(BACKUP_SHIP)
    remote = remotes.find(emu, req.params["remote"], "LINSTOR")
    if "MARK_DELETED" in remote.get("flags", []):
        raise rc.ApiFailure(
            rc.error(
                remotes.FAIL_NOT_FOUND_REMOTE, f"{remotes.describe(remote['name'])} is marked for deletion."
            )
        )
    rd = emu.rd(data.get("src_rsc_name") or "")
    dst_rsc = data.get("dst_rsc_name") or ""
    rc.refuse_invalid(names.resource_name_problem(dst_rsc), rc.FAIL_INVLD_RSC_NAME)
    now = st.now_ms()
    snap_name = data.get("src_snap_name") or bn.generated_snapshot_name(now)
    entries: list[rc.Entry] = []
    snap = rd.snapshots.get(names.key(snap_name))
    made = snap is None
    if snap is None:
        spec: dict[str, Any] = {"name": snap_name}
        if data.get("src_node_name"):
            spec["nodes"] = [data["src_node_name"]]
        entries.extend(snapshots.create_snapshot(emu, rd, spec))
        snap = rd.snapshots[names.key(snap_name)]
    elif "SUCCESSFUL" not in snap.flags or bk.busy(snap):
        raise rc.ApiFailure(
            rc.error(rc.FAIL_IN_USE, f"Snapshot '{snap.name}' of '{rd.name}' cannot be shipped now.")
        )
    r = remote["name"]
    allow_inc = data.get("allow_incremental")
    candidates = []
    if allow_inc is None or allow_inc:
        shipped = [s for s in rd.snapshots.values() if s is not snap and bk.source_status(s, r) == bn.SUCCESS]
        shipped.sort(key=lambda s: s.create_ts, reverse=True)
        candidates = [{"uuid": s.uuid, "name": s.name} for s in shipped]
    begin = {
        "src_cluster_id": ops.cluster_id(emu),
        "src_rsc": rd.name,
        "src_snap": snap.name,
        "src_snap_uuid": snap.uuid,
        "dst_rsc": dst_rsc,
        "dst_snap": data.get("dst_snap_name") or snap.name,
        "volumes": [
            {"vlm_nr": sv.number, "size_kib": sv.size_kib, "props": sv.props}
            for sv in sorted(snap.volumes.values(), key=lambda v: v.number)
        ],
        "rd_props": dict(snap.rd_props),
        "dst_stor_pool": data.get("dst_stor_pool") or "",
        "stor_pool_rename": data.get("stor_pool_rename") or {},
        "dst_node_name": data.get("dst_node_name") or "",
        "dst_rsc_grp": data.get("dst_rsc_grp") or "",
        "download_only": bool(data.get("download_only")),
        "candidates": candidates,
    }
    try:
        answer = remotes.unlocked(emu, lambda: _post(remote["url"], "/_emu/l2l/begin", json=begin))
    except RemoteFailure as exc:
        if made:
            bk.drop_files(snap)
            rd.snapshots.pop(names.key(snap.name), None)
        raise rc.ApiFailure(*exc.entries) from None
    base = (answer or {}).get("base")
    snap.props[bn.source_key(r, bn.START)] = str(now)
    snap.props[bn.source_key(r, bn.STATUS)] = bn.SHIPPING
    if base:
        snap.props[bn.source_key(r, bn.PREV)] = base["name"]
    else:
        snap.props.pop(bn.source_key(r, bn.PREV), None)
    bk.set_flags(snap, add=("BACKUP", "SHIPPING"), remove=("SHIPPED",))
    base_snap = rd.snapshots.get(names.key(base["name"])) if base else None
    job = bk.Job("l2l", names.key(rd.name), names.key(snap.name), names.key(r))
    files = {
        sv.number: (
            Path(sv.file) if sv.file else None,
            sv.size_kib,
            Path(b.file) if base_snap and (b := base_snap.volumes.get(str(sv.number))) and b.file else None,
        )
        for sv in snap.volumes.values()
    }
    target = {"url": remote["url"], "rsc": answer["rsc"], "snap": answer["snap"], "name": r}
    bk.engine_of(emu).start(job, lambda j: _send(emu, j, target, files, base is not None))
    entries.append(
        rc.info(
            0,
            f"Shipping of resource {rd.name} to remote {r} in progress.",
            obj_refs={"RscDfn": rd.name, "SnapshotName": snap.name},
        )
    )
    return entries


def _send(
    emu: Emulator, job: bk.Job, target: dict[str, str], files: dict[int, Any], incremental: bool
) -> None:
    url, where = target["url"], {"rsc": target["rsc"], "snap": target["snap"]}
    status = bn.SUCCESS
    try:
        for nr, (path, size_kib, base) in sorted(files.items()):
            offset = 0
            stream = bs.pieces(path, size_kib * 1024, base if incremental else None)
            for piece in bs.chunks(stream, CHUNK):
                if job.stop.is_set():
                    raise InterruptedError
                _post(
                    url,
                    "/_emu/l2l/data",
                    method="PUT",
                    params={**where, "vlm": nr, "offset": offset},
                    data=piece,
                )
                offset += len(piece)
        _post(url, "/_emu/l2l/done", json=where)
    except InterruptedError:
        status = bn.ABORTED
    except (RemoteFailure, OSError, bs.StreamError) as exc:
        log.warning("shipment of %s/%s to %s failed: %s", job.rd_key, job.snap_key, target["name"], exc)
        status = bn.FAILED
    if status != bn.SUCCESS:
        with contextlib.suppress(RemoteFailure):
            _post(url, "/_emu/l2l/abort", json=where)

    def end(rd: st.ResourceDefinition | None) -> None:
        snap = bk.snapshot_of(rd, job.snap_key)
        if snap is not None:
            bk.end_source(snap, target["name"], status)
            if status == bn.SUCCESS and rd is not None:
                rd.props[bn.source_key(target["name"], bn.LAST_SNAPSHOT)] = snap.name

    bk.mutate(emu, job.rd_key, end)


def abort_on_target(remote: dict[str, Any], rsc: str, snap: st.Snapshot) -> None:
    """Tell the target that a shipment is over (after a restart of the source), in the background."""

    def run() -> None:
        try:
            _post(remote["url"], "/_emu/l2l/abort", json={"src_snap_uuid": snap.uuid})
        except RemoteFailure as exc:
            log.info("could not tell %s about the interrupted shipment of %s: %s", remote["name"], rsc, exc)

    threading.Thread(target=run, name="l2l-abort", daemon=True).start()


# ---------------------------------------------------------------------- target


class _Receive:
    def __init__(self, rd_key: str, snap_key: str, files: dict[int, Path], download_only: bool) -> None:
        self.rd_key, self.snap_key = rd_key, snap_key
        self.files = files
        self.download_only = download_only
        self.appliers: dict[int, bs.Applier] = {}
        self.lock = threading.Lock()


_RECEIVES: dict[tuple[int, str, str], _Receive] = {}
_RECEIVES_LOCK = threading.Lock()


def _fail(code: int, message: str, status: int = 500) -> tuple[int, Any]:
    return status, [rc.error(code, message).to_json()]


def handle(emu: Emulator, method: str, path: str, query: str, raw: bytes) -> tuple[int, Any]:
    """The internal receiving API (``/_emu/l2l/...``)."""
    try:
        if method == "POST" and path.rstrip("/") == "/_emu/l2l/begin":
            return _begin(emu, json.loads(raw or b"{}"))
        if method == "PUT" and path.rstrip("/") == "/_emu/l2l/data":
            return _data(emu, {k: v[0] for k, v in parse_qs(query).items()}, raw)
        if method == "POST" and path.rstrip("/") == "/_emu/l2l/done":
            return _done(emu, json.loads(raw or b"{}"))
        if method == "POST" and path.rstrip("/") == "/_emu/l2l/abort":
            return _abort(emu, json.loads(raw or b"{}"))
    except rc.ApiFailure as exc:
        return rc.http_status(exc.entries, 500), [e.to_json() for e in exc.entries]
    except (ValueError, KeyError, TypeError) as exc:
        return _fail(rc.FAIL_INVLD_REQUEST, f"Malformed internal backup request: {exc}", 400)
    return 404, "Not Found"


def _key(emu: Emulator, rsc: str, snap: str) -> tuple[int, str, str]:
    return id(emu), names.key(rsc), names.key(snap)


def _begin(emu: Emulator, data: dict[str, Any]) -> tuple[int, Any]:
    dst_rsc, dst_snap = data["dst_rsc"], data["dst_snap"]
    rd_key = names.key(dst_rsc)
    download_only = bool(data.get("download_only"))

    def register(
        rd: st.ResourceDefinition | None,
    ) -> tuple[dict[str, Any] | None, dict[int, tuple[Path, Path | None]]]:
        known = [r for r in emu.state.remotes.values() if r["type"] == "LINSTOR"]
        if not any(r.get("cluster_id") == data["src_cluster_id"] for r in known):
            raise rc.ApiFailure(
                rc.error(
                    FAIL_BACKUP_UNKNOWN_CLUSTER,
                    f"Unknown Cluster. Source Cluster ID: {data['src_cluster_id']}",
                )
            )
        rc.refuse_invalid(names.resource_name_problem(dst_rsc), rc.FAIL_INVLD_RSC_NAME)
        rc.refuse_invalid(names.snapshot_name_problem(dst_snap), rc.FAIL_INVLD_SNAPSHOT_NAME)
        node = emu.node(data.get("dst_node_name") or emu.config.local_node)
        src_pool = emu.config.pool_name
        pool = data.get("dst_stor_pool") or (data.get("stor_pool_rename") or {}).get(src_pool, src_pool)
        emu.pool(node, pool)
        if rd is not None and names.key(dst_snap) in rd.snapshots:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_EXISTS_SNAPSHOT_DFN,
                    f"A snapshot definition with the name '{dst_snap}' already exists in resource definition "
                    f"'{rd.name}'.",
                )
            )
        if rd is not None and rd.resources and not download_only:
            raise rc.ApiFailure(
                rc.error(rc.FAIL_EXISTS_RSC, f"Resource definition '{rd.name}' already has resources.")
            )
        if rd is None:
            rd, _ = new_rd(emu, dst_rsc, rg_name=data.get("dst_rsc_grp") or None)
            emu.state.resource_definitions[rd_key] = rd
        vols = {int(v["vlm_nr"]): v for v in data["volumes"]}
        if not rd.volume_definitions and not download_only:
            for nr, v in sorted(vols.items()):
                rd.volume_definitions[str(nr)] = st.VolumeDefinition(
                    number=nr,
                    size_kib=int(v["size_kib"]),
                    props=dict(v.get("props") or {}),
                    minor=emu.next_minor(),
                )
        base = None
        for cand in data.get("candidates") or []:
            for s in rd.snapshots.values():
                usable = all(str(nr) in s.volumes and s.volumes[str(nr)].file for nr in vols)
                if s.props.get(SOURCE_SNAP_UUID) == cand["uuid"] and "SUCCESSFUL" in s.flags and usable:
                    base = {"name": cand["name"], "snap": s}
                    break
            if base:
                break
        snap = st.Snapshot(
            name=dst_snap,
            nodes=[node.name],
            props={
                bn.target_key(bn.STATUS): bn.SHIPPING,
                bn.target_key(bn.START): str(st.now_ms()),
                FROM_CLUSTER: data["src_cluster_id"],
                SOURCE_SNAP_UUID: data["src_snap_uuid"],
            },
            rd_props=dict(data.get("rd_props") or {}),
            flags=["BACKUP", "SHIPPING"],
            pools={names.key(node.name): pool},
            node_uuids={names.key(node.name): st.new_uuid()},
        )
        files: dict[int, tuple[Path, Path | None]] = {}
        for nr, v in sorted(vols.items()):
            path = emu.storage.snapshot_path(node.name, pool, rd.name, nr, dst_snap)
            snap.volumes[str(nr)] = st.SnapshotVolume(
                number=nr, size_kib=int(v["size_kib"]), props=dict(v.get("props") or {}), file=str(path)
            )
            base_file = base["snap"].volumes[str(nr)].file if base else None
            files[nr] = (path, Path(base_file) if base_file else None)
        rd.snapshots[names.key(dst_snap)] = snap
        return ({"name": base["name"]} if base else None), files

    base, files = bk.mutate(emu, rd_key, register)
    for path, base_file in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        if base_file is not None:
            emu.storage.snapshot(base_file, path)
    receive = _Receive(rd_key, names.key(dst_snap), {nr: p for nr, (p, _b) in files.items()}, download_only)
    with _RECEIVES_LOCK:
        _RECEIVES[_key(emu, dst_rsc, dst_snap)] = receive
    return 200, {"base": base, "rsc": dst_rsc, "snap": dst_snap}


def _receive(emu: Emulator, where: dict[str, Any]) -> _Receive:
    with _RECEIVES_LOCK:
        receive = _RECEIVES.get(_key(emu, where["rsc"], where["snap"]))
    if receive is None:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_NOT_FOUND_SNAPSHOT_DFN,
                f"No shipment into snapshot '{where['snap']}' of '{where['rsc']}' is being received.",
            )
        )
    return receive


def _data(emu: Emulator, q: dict[str, str], raw: bytes) -> tuple[int, Any]:
    receive = _receive(emu, q)
    nr, offset = int(q["vlm"]), int(q["offset"])
    with receive.lock:
        applier = receive.appliers.get(nr)
        if applier is None:
            if nr not in receive.files:
                return _fail(rc.FAIL_NOT_FOUND_VLM_DFN, f"The shipment has no volume {nr}.", 404)
            applier = receive.appliers[nr] = bs.Applier(receive.files[nr])
        if offset != applier.received:
            return _fail(
                rc.FAIL_INVLD_REQUEST,
                f"Volume {nr}: expected the data at {applier.received}, got {offset}.",
                409,
            )
        applier.feed(raw)
    return 200, {}


def _done(emu: Emulator, where: dict[str, Any]) -> tuple[int, Any]:
    receive = _receive(emu, where)
    with receive.lock:
        for applier in receive.appliers.values():
            applier.finish()
        missing = set(receive.files) - set(receive.appliers)
    with _RECEIVES_LOCK:
        _RECEIVES.pop(_key(emu, where["rsc"], where["snap"]), None)
    if missing:
        _drop(emu, receive)
        return _fail(rc.FAIL_UNKNOWN_ERROR, f"The shipment ended without data for volumes {sorted(missing)}.")

    def finish(rd: st.ResourceDefinition | None) -> None:
        snap = bk.snapshot_of(rd, receive.snap_key)
        if snap is None:
            return
        bk.end_target(snap, bn.SUCCESS)
        for sv in snap.volumes.values():
            if sv.file and Path(sv.file).exists():
                sv.allocated_kib = emu.storage.allocated_kib(Path(sv.file))

    bk.mutate(emu, receive.rd_key, finish)
    if not receive.download_only:
        snapshots.deploy_restored(emu, receive.rd_key, receive.snap_key)
    return 200, {}


def _drop(emu: Emulator, receive: _Receive) -> None:
    for applier in receive.appliers.values():
        applier.close()

    def drop(rd: st.ResourceDefinition | None) -> None:
        snap = bk.snapshot_of(rd, receive.snap_key)
        if rd is None or snap is None:
            return
        bk.drop_files(snap)
        del rd.snapshots[receive.snap_key]
        if not rd.snapshots and not rd.resources:
            emu.state.resource_definitions.pop(receive.rd_key, None)

    bk.mutate(emu, receive.rd_key, drop)


def _abort(emu: Emulator, where: dict[str, Any]) -> tuple[int, Any]:
    if "src_snap_uuid" in where:
        # After a restart of the source: find the receive by the source snapshot's uuid.
        with emu.lock:
            found = [
                (rd.name, s.name)
                for rd in emu.state.resource_definitions.values()
                for s in rd.snapshots.values()
                if s.props.get(SOURCE_SNAP_UUID) == where["src_snap_uuid"]
                and bk.target_status(s) == bn.SHIPPING
            ]
        if not found:
            return 200, {}
        where = {"rsc": found[0][0], "snap": found[0][1]}
    with _RECEIVES_LOCK:
        receive = _RECEIVES.pop(_key(emu, where["rsc"], where["snap"]), None)
    if receive is None:
        # Nothing in memory (the target restarted): drop the unfinished snapshot if the state has one.
        rd_key, snap_key = names.key(where["rsc"]), names.key(where["snap"])
        with emu.lock:
            rd = emu.state.resource_definitions.get(rd_key)
            snap = bk.snapshot_of(rd, snap_key)
            unfinished = snap is not None and bk.target_status(snap) == bn.SHIPPING
        if unfinished:
            _drop(emu, _Receive(rd_key, snap_key, {}, True))
        return 200, {}
    _drop(emu, receive)
    return 200, {}
