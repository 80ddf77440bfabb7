"""Backups: ``/v1/remotes/{remote}/backups`` (ship, list, delete) and its ``restore``, ``abort`` and ``info``.

Shipping and restoring run in the background (:mod:`emulator.backups`); these handlers check
the request, set the snapshot up and answer, as the controller does.
"""

from __future__ import annotations

from typing import Any

from emulator import backup_names as bn
from emulator import backup_s3 as s3b
from emulator import backups as bk
from emulator import body, names, ops, remotes, snapshots
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator
from emulator.definitions import new_rd
from emulator.routing import Json, Pojo, Request, omit_empty
from emulator.s3_target import S3Error, S3Target

BACKUP = remotes.MASK_BACKUP
FAIL_NOT_FOUND_BACKUP = 322
FAIL_DEPENDEND_BACKUP = 977
FAIL_EXISTS_SNAPSHOT = 516
INFO_NOOP = 10011

BACKUP_CREATE = body.Obj(
    {
        "rsc_name": body.STR,
        "node_name": body.STR,
        "snap_name": body.STR,
        "incremental": body.BOOL,
        "dst_snap_name": body.STR,
    }
)
BACKUP_RESTORE = body.Obj(
    {
        "src_rsc_name": body.STR,
        "src_snap_name": body.STR,
        "last_backup": body.STR,
        "stor_pool_map": body.PROPS,
        "target_rsc_name": body.STR,
        "passphrase": body.STR,
        "node_name": body.STR,
        "download_only": body.BOOL,
        "force_restore": body.BOOL,
        "dst_rsc_grp": body.STR,
        "force_mv_rsc_grp": body.BOOL,
    }
)
BACKUP_ABORT = body.Obj(
    {"rsc_name": body.STR, "restore": body.BOOL, "create": body.BOOL, "snapshot": body.STR}
)
BACKUP_INFO = body.Obj(
    {
        "src_rsc_name": body.STR,
        "src_snap_name": body.STR,
        "last_backup": body.STR,
        "stor_pool_map": body.PROPS,
        "node_name": body.STR,
    }
)


def _s3(emu: Emulator, name: str) -> dict[str, Any]:
    remote = remotes.find(emu, name, "S3")
    return remote


def _s3_failure(exc: S3Error, what: str) -> rc.ApiFailure:
    return rc.ApiFailure(remotes.backup_error(rc.FAIL_UNKNOWN_ERROR, f"{what}: {exc}"))


def _network(emu: Emulator, remote: dict[str, Any], fn: Any, what: str) -> Any:
    """Run ``fn(target)`` against the remote's bucket without the state lock; S3 errors become entries."""
    try:
        target = S3Target(dict(remote))
        return remotes.unlocked(emu, lambda: fn(target))
    except S3Error as exc:
        raise _s3_failure(exc, what) from None


# ---------------------------------------------------------------------- ship


def create(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(BACKUP_CREATE)
    rsc = data.get("rsc_name") or ""
    if not rsc:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_RSC_NAME, "The resource to back up (rsc_name) is missing.")
        )
    remote = _s3(emu, req.params["remote"])
    if "MARK_DELETED" in remote.get("flags", []):
        raise rc.ApiFailure(
            rc.error(
                remotes.FAIL_NOT_FOUND_REMOTE,
                f"{remotes.describe(remote['name'])} is marked for deletion; no new shipments start to it.",
            )
        )
    rd = emu.rd(rsc)
    now = st.now_ms()
    entries: list[rc.Entry] = []
    snap_name = data.get("snap_name") or ""
    if not snap_name:
        snap_name = bn.generated_snapshot_name(now)
        entries.append(
            rc.info(0, f"Generated snapshot name for backup of resource {rd.name} to remote {remote['name']}")
        )
    snap = rd.snapshots.get(names.key(snap_name))
    existing = snap is not None
    if snap is not None:
        if "SUCCESSFUL" not in snap.flags or {"DELETE", "FAILED_DEPLOYMENT", "FAILED_DISCONNECT"} & set(
            snap.flags
        ):
            raise rc.ApiFailure(
                rc.error(
                    remotes.FAIL_INVLD_REMOTE_NAME,
                    "The given snapshot was not successful and can therefore not be shipped",
                )
            )
        if bk.source_status(snap, remote["name"]) == bn.SHIPPING:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_IN_USE,
                    f"Snapshot '{snap.name}' of '{rd.name}' is already being shipped to remote "
                    f"'{remote['name']}'.",
                )
            )
    else:
        spec: dict[str, Any] = {"name": snap_name}
        if data.get("node_name"):
            spec["nodes"] = [data["node_name"]]
        entries.extend(snapshots.create_snapshot(emu, rd, spec))
        snap = rd.snapshots[names.key(snap_name)]
    r = remote["name"]
    prev = rd.props.get(bn.source_key(r, bn.LAST_STARTED), "") if data.get("incremental") else ""
    snap.props[bn.source_key(r, bn.START)] = str(now)
    snap.props[bn.source_key(r, bn.STATUS)] = bn.SHIPPING
    if prev and names.key(prev) != names.key(snap.name):
        snap.props[bn.source_key(r, bn.PREV)] = prev
    else:
        snap.props.pop(bn.source_key(r, bn.PREV), None)
    bk.set_flags(snap, add=("BACKUP", "SHIPPING"), remove=("SHIPPED",))
    if not existing:
        rd.props[bn.source_key(r, bn.LAST_STARTED)] = snap.name
    s3b.start_upload(emu, rd, snap, remote)
    entries.append(
        rc.info(
            0,
            f"Shipping of resource {rd.name} to remote {r} in progress.",
            obj_refs={"RscDfn": rd.name, "SnapshotName": snap.name},
        )
    )
    return entries


# ---------------------------------------------------------------------- list


def list_backups(emu: Emulator, req: Request) -> Json:
    remote = _s3(emu, req.params["remote"])
    rsc = req.q_first("rsc_name") or ""
    snap_filter = req.q_first("snap_name") or ""

    def read(target: S3Target) -> tuple[list[str], dict[str, dict[str, Any]]]:
        keys = target.keys(rsc)
        return keys, s3b.read_metas(target, keys, rsc, snap_filter)

    keys, metas = _network(emu, remote, read, "Listing the backups failed")
    all_keys = set(keys)
    linstor: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for key, meta in sorted(metas.items()):
        backup, owned = s3b.backup_from_meta(key, meta, all_keys)
        linstor[backup["id"]] = backup
        used |= owned | {key}
    # Volume objects without a meta object: a backup still shipping, or one that failed.
    partial: dict[bn.BackupName, dict[int, str]] = {}
    for key in sorted(all_keys - used):
        parsed = bn.parse_volume(key)
        if parsed is None or (rsc and parsed[0].rsc != rsc):
            continue
        name, nr = parsed
        if snap_filter and name.snap.lower() != snap_filter.lower():
            continue
        partial.setdefault(name, {})[nr] = key
        used.add(key)
    for name, vlm_keys in partial.items():
        rd = emu.state.resource_definitions.get(names.key(name.rsc))
        snap = rd.snapshots.get(names.key(name.snap)) if rd else None
        linstor[name.id] = s3b.partial_backup(name, vlm_keys, snap, remote["name"])
    # Shipments in progress whose objects are not visible yet.
    for rd in emu.state.resource_definitions.values():
        if rsc and names.key(rd.name) != names.key(rsc):
            continue
        for snap in rd.snapshots.values():
            if bk.source_status(snap, remote["name"]) != bn.SHIPPING:
                continue
            if snap_filter and snap.name.lower() != snap_filter.lower():
                continue
            start = int(snap.props.get(bn.source_key(remote["name"], bn.START), "0"))
            name = bn.BackupName(rd.name, start, snap.name)
            if name.id not in linstor:
                vlm_keys = {sv.number: name.volume_key(sv.number) for sv in snap.volumes.values()}
                linstor[name.id] = s3b.partial_backup(name, vlm_keys, snap, remote["name"])
    other = sorted(all_keys - used)
    # Jackson keeps the ``other`` object even when it has no files.
    return Json(omit_empty({"linstor": dict(sorted(linstor.items())), "other": Pojo({"files": other})}))


# ---------------------------------------------------------------------- info


def _select(
    emu: Emulator, remote: dict[str, Any], src_rsc: str, src_snap: str, last: str
) -> tuple[bn.BackupName, dict[str, int], list[tuple[bn.BackupName, dict[str, Any]]]]:
    """The backup a restore or info means, the bucket's object sizes, and its chain (full first)."""
    if last:
        name = bn.parse_id(last)
        if name is None:
            raise rc.ApiFailure(
                remotes.backup_error(
                    remotes.FAIL_INVLD_BACKUP_CONFIG,
                    f"The target backup {last} is invalid since it does not match the pattern of '<rscName>"
                    "_back_YYYYMMDD_HHMMSS[optional-backup-s3-suffix][^snapshot-name][.meta]' "
                    "(e.g. my-rsc_back_20210824_072543).Please provide a valid target backup, or provide "
                    "only the source resource name to restore to the latest backup of that resource.",
                )
            )
        prefix = name.rsc
    elif src_rsc:
        name, prefix = None, src_rsc
    else:
        raise rc.ApiFailure(
            remotes.backup_error(
                remotes.FAIL_INVLD_BACKUP_CONFIG,
                "Either the source resource (src_rsc_name) or a backup id (last_backup) is needed.",
            )
        )

    def read(target: S3Target) -> Any:
        sizes = target.sizes(prefix)
        chosen = name or s3b.latest(list(sizes), src_rsc, src_snap)
        if chosen is None or chosen.meta_key not in sizes:
            return chosen, sizes, None
        return chosen, sizes, s3b.chain_of(target, chosen)

    chosen, sizes, chain = _network(emu, remote, read, "Reading the backups failed")
    if chosen is None:
        raise rc.ApiFailure(
            remotes.backup_error(
                FAIL_NOT_FOUND_BACKUP,
                f"Could not find a matching backup for resource '{src_rsc}', snapshot '{src_snap}' and id "
                f"'{last}' in remote '{remote['name']}'",
            )
        )
    if chain is None:
        raise rc.ApiFailure(
            remotes.backup_error(
                rc.FAIL_NOT_FOUND_SNAPSHOT_DFN,
                f"Could not find the needed meta-file with the name '{chosen.meta_key}' in remote "
                f"'{remote['name']}'",
            )
        )
    for part, meta in chain:
        for infos in (meta.get("backups") or {}).values():
            for info in infos or []:
                if info.get("name") not in sizes:
                    raise rc.ApiFailure(
                        remotes.backup_error(
                            FAIL_NOT_FOUND_BACKUP,
                            f"The backup {part.id} is not restorable: its object {info.get('name')} is "
                            f"missing in remote '{remote['name']}'.",
                        )
                    )
    return chosen, sizes, chain


def _volumes(meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
    vds = (meta.get("rscDfn") or {}).get("vlmDfns") or {}
    return {int(k): v for k, v in vds.items()}


def _source_pool(emu: Emulator, meta: dict[str, Any], rename: dict[str, str]) -> str:
    pool = (meta.get("layerData") or {}).get("storPoolName") or emu.config.pool_name
    return rename.get(pool, pool)


def info(emu: Emulator, req: Request) -> Json:
    data = req.body(BACKUP_INFO)
    remote = _s3(emu, req.params["remote"])
    chosen, sizes, chain = _select(
        emu,
        remote,
        data.get("src_rsc_name") or "",
        data.get("src_snap_name") or "",
        data.get("last_backup") or "",
    )
    latest_meta = chain[-1][1]
    pool = _source_pool(emu, latest_meta, data.get("stor_pool_map") or {})
    vlms = []
    dl_total = alloc_total = 0
    for nr, vd in sorted(_volumes(latest_meta).items()):
        dl = sum(sizes.get(part.volume_key(nr), 0) for part, _ in chain) // 1024
        size = int(vd.get("size") or 0)
        dl_total += dl
        alloc_total += size
        vlms.append(
            {
                "name": f"{chosen.rsc}_{nr:05d}",
                "layer_type": "STORAGE",
                "dl_size_kib": dl,
                "alloc_size_kib": size,
                "usable_size_kib": size,
            }
        )
    storpool: dict[str, Any] = {"name": pool, "provider_kind": "FILE_THIN", "target_name": pool, "vlms": vlms}
    node_name = data.get("node_name")
    if node_name:
        node = emu.node(node_name)
        p = emu.pool(node, pool)
        cap = emu.capacity(p)
        if cap is not None:
            storpool["remaining_space_kib"] = cap[1] - alloc_total
    return Json(
        omit_empty(
            {
                "rsc": chosen.rsc,
                "full": chain[0][0].id,
                "snap": chosen.snap,
                "latest": chosen.id,
                "count": len(chain),
                "dl_size_kib": dl_total,
                "alloc_size_kib": alloc_total,
                "storpools": [storpool],
            }
        )
    )


# ---------------------------------------------------------------------- restore


def restore(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(BACKUP_RESTORE)
    remote = _s3(emu, req.params["remote"])
    target_name = data.get("target_rsc_name") or ""
    rc.refuse_invalid(names.resource_name_problem(target_name), rc.FAIL_INVLD_RSC_NAME)
    if not data.get("node_name"):
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_NODE_NAME, "The node to restore on (node_name) is missing.")
        )
    node = emu.node(data["node_name"])
    chosen, _sizes, chain = _select(
        emu,
        remote,
        data.get("src_rsc_name") or "",
        data.get("src_snap_name") or "",
        data.get("last_backup") or "",
    )
    download_only = bool(data.get("download_only"))
    latest_meta = chain[-1][1]
    pool_name = _source_pool(emu, latest_meta, data.get("stor_pool_map") or {})
    emu.pool(node, pool_name)
    existing = emu.state.resource_definitions.get(names.key(target_name))
    if existing is not None and existing.resources and not download_only:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_RSC,
                f"Resource definition '{existing.name}' already has resources; a restore needs an empty "
                "target (or download_only).",
            )
        )
    if existing is not None and names.key(chosen.snap) in existing.snapshots:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_SNAPSHOT_DFN,
                f"A snapshot definition with the name '{chosen.snap}' already exists in resource definition "
                f"'{existing.name}'.",
            )
        )
    entries: list[rc.Entry] = []
    vols = _volumes(latest_meta)
    if existing is None:
        rd, made = new_rd(emu, target_name, rg_name=data.get("dst_rsc_grp") or None)
        entries.extend(made)
        emu.state.resource_definitions[names.key(rd.name)] = rd
    else:
        rd = existing
    if not rd.volume_definitions and not download_only:
        for nr, vd in sorted(vols.items()):
            rd.volume_definitions[str(nr)] = st.VolumeDefinition(
                number=nr,
                size_kib=int(vd.get("size") or 0),
                props=dict(vd.get("props") or {}),
                minor=emu.next_minor(),
            )
    now = st.now_ms()
    snap = st.Snapshot(
        name=chosen.snap,
        nodes=[node.name],
        props={bn.target_key(bn.STATUS): bn.SHIPPING, bn.target_key(bn.START): str(now)},
        rd_props=dict((latest_meta.get("rscDfn") or {}).get("props") or {}),
        flags=["BACKUP", "SHIPPING"],
        pools={names.key(node.name): pool_name},
        node_uuids={names.key(node.name): st.new_uuid()},
    )
    for nr, vd in sorted(vols.items()):
        path = emu.storage.snapshot_path(node.name, pool_name, rd.name, nr, snap.name)
        snap.volumes[str(nr)] = st.SnapshotVolume(
            number=nr, size_kib=int(vd.get("size") or 0), props=dict(vd.get("props") or {}), file=str(path)
        )
    rd.snapshots[names.key(snap.name)] = snap
    after = None if download_only else snapshots.deploy_restored
    s3b.start_download(emu, rd, snap, remote, [n for n, _ in chain], after)
    entries.append(
        rc.info(
            0,
            f"Restoring backup of resource {chosen.rsc} from remote {remote['name']} into resource {rd.name} "
            "in progress.",
            obj_refs={"RscDfn": rd.name, "SnapshotName": snap.name},
        )
    )
    return entries


# ---------------------------------------------------------------------- abort


def abort(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(BACKUP_ABORT)
    rd = emu.rd(data.get("rsc_name") or "")
    remote = remotes.find(emu, req.params["remote"])
    restore_, create_ = bool(data.get("restore")), bool(data.get("create"))
    if not restore_ and not create_:
        restore_ = create_ = True
    kinds = ({"ship", "l2l"} if create_ else set()) | ({"restore"} if restore_ else set())
    snap = data.get("snapshot")
    for job in bk.engine_of(emu).running(names.key(remote["name"])):
        if (
            job.rd_key == names.key(rd.name)
            and job.kind in kinds
            and (not snap or job.snap_key == names.key(snap))
        ):
            job.stop.set()
    what = (
        "in-progress backup-shipments and restores"
        if create_ and restore_
        else ("in-progress backup-shipments" if create_ else "in-progress backup-restores")
    )
    return [rc.success(0, f"Successfully aborted all {what} of resource {rd.name}")]


# ---------------------------------------------------------------------- delete


def _dependents(metas: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """meta key -> meta keys of the backups based on it."""
    out: dict[str, list[str]] = {}
    for key, meta in metas.items():
        base = meta.get("basedOn")
        if base:
            out.setdefault(base, []).append(key)
    return out


def _older_than(name: bn.BackupName, raw: str) -> bool:
    """``timestamp``: a backup started before it (milliseconds, or ``YYYYMMDD_HHMMSS`` UTC)."""
    try:
        limit = int(raw)
    except ValueError:
        parsed = bn.parse_meta(f"x_{bn.PREFIX}{raw}.meta")
        if parsed is None:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_INVLD_REQUEST,
                    f"The timestamp '{raw}' is neither milliseconds since the epoch nor YYYYMMDD_HHMMSS.",
                )
            ) from None
        limit = parsed.start_ms
    return name.start_ms < limit


def delete(emu: Emulator, req: Request) -> list[rc.Entry]:
    remote = _s3(emu, req.params["remote"])
    bid, prefix = req.q_first("id") or "", req.q_first("id_prefix") or ""
    s3key, s3key_force = req.q_first("s3key") or "", req.q_first("s3key_force") or ""
    rsc, node, ts = (
        req.q_first("resource_name") or "",
        req.q_first("node_name") or "",
        req.q_first("timestamp") or "",
    )
    cascading, dryrun, keep_snaps = req.q_bool("cascading"), req.q_bool("dryrun"), req.q_bool("keep_snaps")
    everything, local_cluster = req.q_bool("all"), req.q_bool("all_local_cluster")

    def read(target: S3Target) -> tuple[list[str], dict[str, dict[str, Any]]]:
        keys = target.keys()
        return keys, s3b.read_metas(target, keys)

    keys, metas = _network(emu, remote, read, "Listing the backups failed")
    key_set = set(keys)
    deps = _dependents(metas)
    entries: list[rc.Entry] = []
    chosen: list[str] = []  # meta keys selected
    if bid:
        meta_key = bid if bid.endswith(bn.META_SUFFIX) else bid + bn.META_SUFFIX
        if meta_key in metas:
            chosen = [meta_key]
        else:
            entries.append(
                rc.warn(
                    rc.WARN_NOT_FOUND, f"No backup with id '{meta_key}' found on remote '{remote['name']}'"
                )
            )
    elif prefix:
        chosen = sorted(k for k in metas if k.startswith(prefix))
        if not chosen:
            entries.append(
                rc.warn(
                    rc.WARN_NOT_FOUND,
                    f"No backup with id prefix '{prefix}' found on remote '{remote['name']}'",
                )
            )
    elif s3key or s3key_force:
        key = s3key or s3key_force
        if key in metas:
            chosen = [key]
        elif s3key_force or bn.parse_volume(key) is not None:
            if key in key_set:
                chosen = [key]
            else:
                entries.append(
                    rc.warn(rc.WARN_NOT_FOUND, f"The S3 key {key} was not found in the given remote.")
                )
    elif ts or rsc or node:
        for key, meta in metas.items():
            name = bn.parse_meta(key)
            if name is None:
                continue
            if rsc and names.key(name.rsc) != names.key(rsc):
                continue
            if node and names.key(str(meta.get("nodeName", ""))) != names.key(node):
                continue
            if ts and not _older_than(name, ts):
                continue
            chosen.append(key)
        cascading = cascading or False
    elif everything or local_cluster:
        own = ops.cluster_id(emu)
        chosen = [k for k, m in metas.items() if everything or m.get("clusterId") == own]
        cascading = True
    else:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_REQUEST,
                "Say which backups to delete: id, id_prefix, s3key, timestamp/resource_name/node_name, "
                "all_local_cluster or all.",
            )
        )
    to_delete: list[str] = []
    snaps: list[tuple[str, str]] = []

    def add(meta_key: str) -> None:
        if meta_key in to_delete:
            return
        to_delete.append(meta_key)
        meta = metas.get(meta_key)
        if meta is None:
            return
        for infos in (meta.get("backups") or {}).values():
            to_delete.extend(i["name"] for i in infos or [] if i.get("name") in key_set)
        name = bn.parse_meta(meta_key)
        if name is not None:
            snaps.append((name.rsc, name.snap))
        for child in deps.get(meta_key, []):
            if child in to_delete:
                continue
            if not cascading:
                raise rc.ApiFailure(
                    rc.error(
                        FAIL_DEPENDEND_BACKUP,
                        f"{meta_key} should be deleted, but at least {child} is referencing it. Use "
                        "--cascading to delete recursively",
                    )
                )
            add(child)

    for key in chosen:
        add(key)
    local = [
        (rd_name, snap_name)
        for rd_name, snap_name in snaps
        if (rd := emu.state.resource_definitions.get(names.key(rd_name))) is not None
        and (snap := rd.snapshots.get(names.key(snap_name))) is not None
        and bk.source_status(snap, remote["name"])
        and not keep_snaps
    ]
    if dryrun:
        if to_delete:
            entries.append(
                rc.success(0, "Would delete s3 objects:\n" + "".join(f"  {k}\n" for k in to_delete))
            )
        if local:
            entries.append(
                rc.success(
                    0,
                    "Would delete Snapshots:\n"
                    + "".join(f"  Resource: {r}, Snapshot: {s}\n" for r, s in local),
                )
            )
        if not to_delete and not local:
            entries.append(rc.success(0, "Dryrun mode. Although nothing selected for deletion"))
        return entries
    if not to_delete:
        return [*entries, rc.info(INFO_NOOP | BACKUP, "Could not find any backups to delete.")]

    def remove(target: S3Target) -> None:
        for key in to_delete:
            target.delete(key)

    _network(emu, remote, remove, "Deleting the backups failed")
    entries.append(rc.success(BACKUP, f"Successfully deleted [{', '.join(to_delete)}]"))
    for rd_name, snap_name in local:
        rd = emu.state.resource_definitions.get(names.key(rd_name))
        snap = rd.snapshots.get(names.key(snap_name)) if rd else None
        if rd is not None and snap is not None and not bk.busy(snap):
            bk.drop_files(snap)
            del rd.snapshots[names.key(snap_name)]
            entries.append(rc.success(rc.DELETED, f"Snapshot '{snap_name}' of resource '{rd.name}' deleted."))
    return entries
