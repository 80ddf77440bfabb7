"""LINSTOR REST calls about the cluster itself: the controller, nodes, storage pools, key-value store.

One small method per call; answers come back as :mod:`plugin.linstor.records`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from plugin.errors import NotFound
from plugin.linstor import retcodes as rc
from plugin.linstor.records import (
    Node,
    StoragePool,
    VersionInfo,
    many,
)
from plugin.linstor.transport import Entries, Transport


class ClusterEndpoints(Transport):
    """The controller's version, its nodes and their storage pools, and its key-value store."""

    # ------------------------------------------------------------------ controller, nodes, pools

    def controller_version(self) -> VersionInfo:
        return VersionInfo.from_wire(self.request("GET", "/v1/controller/version"))

    def list_nodes(self, nodes: Sequence[str] = (), props: Sequence[str] = ()) -> list[Node]:
        params: dict[str, Any] = {}
        if nodes:
            params["nodes"] = list(nodes)
        if props:
            params["props"] = list(props)
        return many(Node.from_wire, self.request("GET", "/v1/nodes", params=params or None))

    def get_node(self, node: str) -> Node:
        return Node.from_wire(self.request("GET", "/v1/nodes/{}", node))

    def list_storage_pools(
        self, nodes: Sequence[str] = (), storage_pools: Sequence[str] = ()
    ) -> list[StoragePool]:
        params: dict[str, Any] = {}
        if nodes:
            params["nodes"] = list(nodes)
        if storage_pools:
            params["storage_pools"] = list(storage_pools)
        return many(
            StoragePool.from_wire, self.request("GET", "/v1/view/storage-pools", params=params or None)
        )

    def node_storage_pools(self, node: str) -> list[StoragePool]:
        return many(StoragePool.from_wire, self.request("GET", "/v1/nodes/{}/storage-pools", node))

    # ------------------------------------------------------------------ key-value store

    def get_key_value_store(self, instance: str) -> dict[str, str]:
        """The props of one KV instance; a missing instance is empty."""
        try:
            answer = self.request("GET", "/v1/key-value-store/{}", instance)
        except NotFound:
            return {}
        if isinstance(answer, list):
            answer = answer[0] if answer else {}
        return {str(k): str(v) for k, v in ((answer or {}).get("props") or {}).items()}

    def modify_key_value_store(
        self, instance: str, override_props: Mapping[str, str] | None = None, delete_props: Sequence[str] = ()
    ) -> Entries:
        body = {"override_props": dict(override_props or {}), "delete_props": list(delete_props)}
        return rc.entries_of(self.request("PUT", "/v1/key-value-store/{}", instance, body=body))
