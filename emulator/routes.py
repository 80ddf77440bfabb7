"""Every LINSTOR REST route of the emulator, in one table: method, path template, handler.

The table is the one place that says which path reaches which handler, with the status of
a successful mutation and the ret-code context (operation and object bits) its answers
carry. Routes are tried in order and the first one matching method and path wins; the
endpoint modules only define handlers, so importing one registers nothing. The control
API (``/_emu/``, with LINSTOR-to-LINSTOR data under ``/_emu/l2l/``) and ``/metrics`` are
dispatched by the server before this table.
"""

from __future__ import annotations

from emulator import (
    api_backups,
    api_cluster,
    api_nodes,
    api_rd,
    api_remotes,
    api_rg,
    api_rsc,
    api_snap,
    l2l,
    remotes,
)
from emulator import retcodes as rc
from emulator.routing import RouteTable, endpoint

# Operation bits.
CRT, MOD, DEL = rc.MASK_CRT, rc.MASK_MOD, rc.MASK_DEL
# Object bits.
CTRL, NODE, POOL, KVS = rc.MASK_CTRL_CONF, rc.MASK_NODE, rc.MASK_STOR_POOL, rc.MASK_KVS
RG, VG, RD, VD = rc.MASK_RSC_GRP, rc.MASK_VLM_GRP, rc.MASK_RSC_DFN, rc.MASK_VLM_DFN
RSC, SNAP = rc.MASK_RSC, rc.MASK_SNAPSHOT
REMOTE, BACKUP = remotes.MASK_REMOTE, remotes.MASK_BACKUP

ROUTES = RouteTable(
    [
        # remotes (api_remotes)
        endpoint("GET", "/v1/remotes", api_remotes.list_all),
        endpoint("GET", "/v1/remotes/s3", api_remotes.list_s3),
        endpoint("GET", "/v1/remotes/linstor", api_remotes.list_linstor),
        endpoint("GET", "/v1/remotes/ebs", api_remotes.list_ebs),
        endpoint("POST", "/v1/remotes/ebs", api_remotes.create_ebs, op=MOD, obj=REMOTE),
        endpoint("POST", "/v1/remotes/s3", api_remotes.create_s3, op=MOD, obj=REMOTE),
        endpoint("PUT", "/v1/remotes/s3/{remote}", api_remotes.modify_s3, op=MOD, obj=REMOTE),
        endpoint("POST", "/v1/remotes/linstor", api_remotes.create_linstor, op=MOD, obj=REMOTE),
        endpoint("PUT", "/v1/remotes/linstor/{remote}", api_remotes.modify_linstor, op=MOD, obj=REMOTE),
        endpoint("DELETE", "/v1/remotes", api_remotes.delete_remote, op=MOD, obj=REMOTE),
        # controller version, health, nodes, storage pools, key-value store (api_nodes)
        endpoint("GET", "/v1/controller/version", api_nodes.version),
        endpoint("GET", "/health", api_nodes.health),
        endpoint("GET", "/v1/nodes", api_nodes.list_nodes),
        endpoint("GET", "/v1/nodes/{node}", api_nodes.get_node),
        endpoint("PUT", "/v1/nodes/{node}", api_nodes.modify_node, op=MOD, obj=NODE),
        endpoint("GET", "/v1/view/storage-pools", api_nodes.view_pools),
        endpoint("GET", "/v1/nodes/{node}/storage-pools", api_nodes.node_pools),
        endpoint("GET", "/v1/nodes/{node}/storage-pools/{pool}", api_nodes.node_pool),
        endpoint(
            "POST", "/v1/nodes/{node}/storage-pools", api_nodes.create_pool, status=201, op=CRT, obj=POOL
        ),
        endpoint("DELETE", "/v1/nodes/{node}/storage-pools/{pool}", api_nodes.delete_pool, op=DEL, obj=POOL),
        endpoint("GET", "/v1/key-value-store", api_nodes.list_kvs),
        endpoint("GET", "/v1/key-value-store/{instance}", api_nodes.get_kvs),
        endpoint("PUT", "/v1/key-value-store/{instance}", api_nodes.modify_kvs, op=MOD, obj=KVS),
        endpoint("DELETE", "/v1/key-value-store/{instance}", api_nodes.delete_kvs, op=DEL, obj=KVS),
        # resource and volume definitions (api_rd)
        endpoint("GET", "/v1/resource-definitions", api_rd.list_rds),
        endpoint("GET", "/v1/resource-definitions/{rd}", api_rd.get_rd),
        endpoint("POST", "/v1/resource-definitions", api_rd.create_rd, status=201, op=CRT, obj=RD),
        endpoint("PUT", "/v1/resource-definitions/{rd}", api_rd.modify_rd, op=MOD, obj=RD),
        endpoint("DELETE", "/v1/resource-definitions/{rd}", api_rd.delete_rd, op=DEL, obj=RD),
        endpoint("GET", "/v1/resource-definitions/{rd}/volume-definitions", api_rd.list_vds),
        endpoint("GET", "/v1/resource-definitions/{rd}/volume-definitions/{nr}", api_rd.get_vd),
        endpoint(
            "POST", "/v1/resource-definitions/{rd}/volume-definitions", api_rd.create_vd, op=CRT, obj=VD
        ),
        endpoint(
            "PUT", "/v1/resource-definitions/{rd}/volume-definitions/{nr}", api_rd.modify_vd, op=MOD, obj=VD
        ),
        endpoint(
            "DELETE",
            "/v1/resource-definitions/{rd}/volume-definitions/{nr}",
            api_rd.delete_vd,
            op=DEL,
            obj=VD,
        ),
        endpoint("GET", "/v1/resource-definitions/{rd}/sync-status", api_rd.sync_status),
        # snapshots, restores, clones (api_snap)
        endpoint("GET", "/v1/resource-definitions/{rd}/snapshots", api_snap.list_snaps),
        endpoint("GET", "/v1/resource-definitions/{rd}/snapshots/{snap}", api_snap.get_snap),
        endpoint(
            "POST",
            "/v1/resource-definitions/{rd}/snapshots",
            api_snap.post_snap,
            status=201,
            op=CRT,
            obj=SNAP,
        ),
        endpoint("POST", "/v1/actions/snapshot/multi", api_snap.multi_snap, status=201, op=CRT, obj=SNAP),
        endpoint(
            "PUT", "/v1/resource-definitions/{rd}/snapshots/{snap}", api_snap.modify_snap, op=MOD, obj=SNAP
        ),
        endpoint(
            "DELETE", "/v1/resource-definitions/{rd}/snapshots/{snap}", api_snap.delete_snap, op=DEL, obj=SNAP
        ),
        endpoint("GET", "/v1/view/snapshots", api_snap.view_snaps),
        endpoint(
            "POST",
            "/v1/resource-definitions/{rd}/snapshot-restore-volume-definition/{snap}",
            api_snap.restore_vd,
            op=CRT,
            obj=VD,
        ),
        endpoint(
            "POST",
            "/v1/resource-definitions/{rd}/snapshot-restore-resource/{snap}",
            api_snap.restore_rsc,
            op=CRT,
            obj=RSC,
        ),
        endpoint("POST", "/v1/resource-definitions/{rd}/clone", api_snap.clone, status=201, op=CRT, obj=RD),
        endpoint("GET", "/v1/resource-definitions/{rd}/clone/{clone}", api_snap.clone_status),
        # backups on S3 remotes (api_backups)
        endpoint("POST", "/v1/remotes/{remote}/backups", api_backups.create, op=CRT, obj=BACKUP),
        endpoint("GET", "/v1/remotes/{remote}/backups", api_backups.list_backups),
        endpoint("POST", "/v1/remotes/{remote}/backups/info", api_backups.info, obj=BACKUP),
        endpoint("POST", "/v1/remotes/{remote}/backups/restore", api_backups.restore, op=CRT, obj=BACKUP),
        endpoint("POST", "/v1/remotes/{remote}/backups/abort", api_backups.abort, op=MOD, obj=BACKUP),
        endpoint("DELETE", "/v1/remotes/{remote}/backups", api_backups.delete, op=DEL, obj=BACKUP),
        # controller properties, node creation, cluster-wide reads (api_cluster)
        endpoint("GET", "/v1/controller/properties", api_cluster.list_controller_props),
        endpoint("POST", "/v1/controller/properties", api_cluster.set_controller_props, op=MOD, obj=CTRL),
        endpoint("POST", "/v1/nodes", api_cluster.create_node, status=201, op=CRT, obj=NODE),
        endpoint("GET", "/v1/physical-storage", api_cluster.physical_storage),
        endpoint("GET", "/v1/error-reports", api_cluster.error_reports),
        endpoint("GET", "/v1/schedules", api_cluster.schedules),
        # resource and volume groups, spawn, adjust (api_rg)
        endpoint("GET", "/v1/resource-groups", api_rg.list_rgs),
        endpoint("GET", "/v1/resource-groups/{rg}", api_rg.get_rg),
        endpoint("POST", "/v1/resource-groups", api_rg.create_rg, status=201, op=CRT, obj=RG),
        endpoint("PUT", "/v1/resource-groups/{rg}", api_rg.modify_rg, op=MOD, obj=RG),
        endpoint("DELETE", "/v1/resource-groups/{rg}", api_rg.delete_rg, op=DEL, obj=RG),
        endpoint("GET", "/v1/resource-groups/{rg}/volume-groups", api_rg.list_vgs),
        endpoint("GET", "/v1/resource-groups/{rg}/volume-groups/{nr}", api_rg.get_vg),
        endpoint(
            "POST", "/v1/resource-groups/{rg}/volume-groups", api_rg.create_vg, status=201, op=CRT, obj=VG
        ),
        endpoint("PUT", "/v1/resource-groups/{rg}/volume-groups/{nr}", api_rg.modify_vg, op=MOD, obj=VG),
        endpoint("DELETE", "/v1/resource-groups/{rg}/volume-groups/{nr}", api_rg.delete_vg, op=DEL, obj=VG),
        endpoint("POST", "/v1/resource-groups/{rg}/spawn", api_rg.spawn, status=201, op=CRT, obj=RD),
        endpoint("POST", "/v1/resource-groups/{rg}/adjust", api_rg.adjust, op=CRT, obj=RSC),
        endpoint("POST", "/v1/resource-groups/{rg}/query-size-info", api_rg.query_size_info, op=CRT, obj=RG),
        # resources and volumes (api_rsc)
        endpoint("GET", "/v1/resource-definitions/{rd}/resources", api_rsc.list_rscs),
        endpoint("GET", "/v1/resource-definitions/{rd}/resources/{node}", api_rsc.get_rsc),
        endpoint(
            "POST",
            "/v1/resource-definitions/{rd}/resources",
            api_rsc.create_rscs,
            status=201,
            op=CRT,
            obj=RSC,
        ),
        endpoint(
            "POST",
            "/v1/resource-definitions/{rd}/resources/{node}",
            api_rsc.create_rsc,
            status=201,
            op=CRT,
            obj=RSC,
        ),
        endpoint(
            "PUT", "/v1/resource-definitions/{rd}/resources/{node}", api_rsc.modify_rsc, op=MOD, obj=RSC
        ),
        endpoint(
            "DELETE", "/v1/resource-definitions/{rd}/resources/{node}", api_rsc.delete_rsc, op=DEL, obj=RSC
        ),
        endpoint(
            "POST", "/v1/resource-definitions/{rd}/autoplace", api_rsc.autoplace, status=201, op=CRT, obj=RSC
        ),
        endpoint(
            "POST",
            "/v1/resource-definitions/{rd}/resources/{node}/make-available",
            api_rsc.make_available,
            op=CRT,
            obj=RSC,
        ),
        endpoint("GET", "/v1/resource-definitions/{rd}/resources/{node}/volumes", api_rsc.list_volumes),
        endpoint("GET", "/v1/resource-definitions/{rd}/resources/{node}/volumes/{nr}", api_rsc.get_volume),
        endpoint("GET", "/v1/view/resources", api_rsc.view_resources),
        # LINSTOR-to-LINSTOR shipping (l2l)
        endpoint("POST", "/v1/remotes/{remote}/backups/ship", l2l.ship, op=CRT, obj=BACKUP),
    ]
)
