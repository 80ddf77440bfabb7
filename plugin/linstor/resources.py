"""LINSTOR REST calls that make, change and read volumes: groups, definitions, resources, clones.

One small method per call; request bodies are built here from typed arguments and answers
come back as :mod:`plugin.linstor.records`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from plugin.linstor import features, paging
from plugin.linstor import retcodes as rc
from plugin.linstor.records import (
    DefinitionHead,
    Resource,
    ResourceDefinition,
    ResourceGroup,
    Volume,
    VolumeDefinition,
    many,
)
from plugin.linstor.transport import SPACE_206, Entries, Transport


class ResourceEndpoints(Transport):
    """Resource groups, resource and volume definitions, resources (replicas), and clones."""

    #: The controller's version, for request fields older controllers lack (set by the client).
    features: features.ControllerFeatures

    # ------------------------------------------------------------------ resource groups

    def get_resource_group(self, name: str) -> ResourceGroup:
        return ResourceGroup.from_wire(self.request("GET", "/v1/resource-groups/{}", name))

    def create_resource_group(
        self, name: str, select_filter: Mapping[str, Any], props: Mapping[str, str] | None = None
    ) -> Entries:
        body: dict[str, Any] = {"name": name, "select_filter": dict(select_filter)}
        if props:
            body["props"] = dict(props)
        return rc.entries_of(self.request("POST", "/v1/resource-groups", body=body))

    def modify_resource_group(
        self,
        name: str,
        *,
        select_filter: Mapping[str, Any] | None = None,
        override_props: Mapping[str, str] | None = None,
    ) -> Entries:
        body: dict[str, Any] = {"override_props": dict(override_props or {})}
        if select_filter is not None:
            body["select_filter"] = dict(select_filter)
        return rc.entries_of(self.request("PUT", "/v1/resource-groups/{}", name, body=body))

    def spawn(
        self,
        resource_group: str,
        name: str,
        size_kib: int,
        *,
        definition_props: Mapping[str, str] | None = None,
        select_filter: Mapping[str, Any] | None = None,
        definitions_only: bool = False,
    ) -> Entries:
        body: dict[str, Any] = {"resource_definition_name": name, "volume_sizes": [size_kib]}
        if definition_props:
            self.features.require(features.SPAWN_PROPS)
            body["resource_definition_props"] = dict(definition_props)
        if select_filter:
            body["select_filter"] = dict(select_filter)
        if definitions_only:
            body["definitions_only"] = True
        return rc.entries_of(
            self.request(
                "POST", "/v1/resource-groups/{}/spawn", resource_group, body=body, overrides=SPACE_206
            )
        )

    # ------------------------------------------------------------------ resource and volume definitions

    def list_resource_definitions(
        self, names: Sequence[str] = (), with_volume_definitions: bool = True
    ) -> list[ResourceDefinition]:
        params: dict[str, Any] = {}
        if with_volume_definitions:
            params["with_volume_definitions"] = "true"
        if names:
            params["resource_definitions"] = list(names)
        answer = self.request("GET", "/v1/resource-definitions", params=params or None)
        return many(ResourceDefinition.from_wire, answer)

    def iter_resource_definitions(self, with_volume_definitions: bool = True) -> Iterator[ResourceDefinition]:
        """Every resource definition in name order, read a page at a time (see :mod:`.paging`)."""
        return (ResourceDefinition.from_wire(w) for w in self._definition_pages(with_volume_definitions, ()))

    def iter_definition_heads(self, props: Sequence[str] = ()) -> Iterator[DefinitionHead]:
        """Every resource definition with ``props`` (LINSTOR's ``key`` or ``key=value``
        filters, AND-ed) and its volume definitions, in name order and a page at a time, as
        the little a list of names needs of each (:class:`DefinitionHead`)."""
        return (DefinitionHead.from_wire(w) for w in self._definition_pages(True, props))

    def _definition_pages(self, with_volume_definitions: bool, props: Sequence[str]) -> Iterator[Any]:
        params: dict[str, Any] = {"with_volume_definitions": "true"} if with_volume_definitions else {}
        if props:
            params["props"] = list(props)
        return paging.paged(
            self.request, "/v1/resource-definitions", params, self.config.list_page_size, paging.by_name
        )

    def get_resource_definition(self, name: str) -> ResourceDefinition:
        return ResourceDefinition.from_wire(self.request("GET", "/v1/resource-definitions/{}", name))

    def create_resource_definition(
        self, name: str, resource_group: str, props: Mapping[str, str] | None = None
    ) -> Entries:
        rd: dict[str, Any] = {"name": name, "resource_group_name": resource_group}
        if props:
            rd["props"] = dict(props)
        return rc.entries_of(
            self.request("POST", "/v1/resource-definitions", body={"resource_definition": rd})
        )

    def modify_resource_definition(
        self,
        name: str,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
        delete_namespaces: Sequence[str] = (),
    ) -> Entries:
        body: dict[str, Any] = {
            "override_props": dict(override_props or {}),
            "delete_props": list(delete_props),
        }
        if delete_namespaces:
            body["delete_namespaces"] = list(delete_namespaces)
        return rc.entries_of(self.request("PUT", "/v1/resource-definitions/{}", name, body=body))

    def delete_resource_definition(self, name: str) -> Entries:
        return rc.entries_of(self.request("DELETE", "/v1/resource-definitions/{}", name))

    def get_volume_definition(self, name: str, volume_number: int = 0) -> VolumeDefinition:
        return VolumeDefinition.from_wire(
            self.request("GET", "/v1/resource-definitions/{}/volume-definitions/{}", name, volume_number)
        )

    def resize_volume_definition(self, name: str, size_kib: int, volume_number: int = 0) -> Entries:
        return rc.entries_of(
            self.request(
                "PUT",
                "/v1/resource-definitions/{}/volume-definitions/{}",
                name,
                volume_number,
                body={"size_kib": size_kib},
            )
        )

    def create_volume_definition(
        self, name: str, size_kib: int, props: Mapping[str, str] | None = None
    ) -> Entries:
        """A new volume of the resource, numbered by LINSTOR (the lowest free number)."""
        vd: dict[str, Any] = {"size_kib": size_kib}
        if props:
            vd["props"] = dict(props)
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/volume-definitions",
                name,
                body={"volume_definition": vd},
                overrides=SPACE_206,
            )
        )

    def list_volume_definitions(self, name: str) -> list[VolumeDefinition]:
        return many(
            VolumeDefinition.from_wire,
            self.request("GET", "/v1/resource-definitions/{}/volume-definitions", name),
        )

    def modify_volume_definition(
        self,
        name: str,
        volume_number: int,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
    ) -> Entries:
        body = {"override_props": dict(override_props or {}), "delete_props": list(delete_props)}
        return rc.entries_of(
            self.request(
                "PUT", "/v1/resource-definitions/{}/volume-definitions/{}", name, volume_number, body=body
            )
        )

    def delete_volume_definition(self, name: str, volume_number: int) -> Entries:
        return rc.entries_of(
            self.request("DELETE", "/v1/resource-definitions/{}/volume-definitions/{}", name, volume_number)
        )

    # ------------------------------------------------------------------ resources

    def get_resource(self, name: str, node: str) -> Resource:
        return Resource.from_wire(self.request("GET", "/v1/resource-definitions/{}/resources/{}", name, node))

    def create_resource(
        self,
        name: str,
        node: str,
        *,
        diskless: bool = False,
        storage_pool: str | None = None,
        props: Mapping[str, str] | None = None,
    ) -> Entries:
        resource: dict[str, Any] = {"node_name": node}
        merged = dict(props or {})
        if storage_pool:
            merged["StorPoolName"] = storage_pool
        if merged:
            resource["props"] = merged
        if diskless:
            resource["flags"] = ["DRBD_DISKLESS"]
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/resources/{}",
                name,
                node,
                body={"resource": resource},
                overrides=SPACE_206,
            )
        )

    def modify_resource(
        self,
        name: str,
        node: str,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
    ) -> Entries:
        body = {"override_props": dict(override_props or {}), "delete_props": list(delete_props)}
        return rc.entries_of(
            self.request("PUT", "/v1/resource-definitions/{}/resources/{}", name, node, body=body)
        )

    def delete_resource(self, name: str, node: str, keep_tiebreaker: bool = False) -> Entries:
        params = {"keep_tiebreaker": "true"} if keep_tiebreaker else None
        return rc.entries_of(
            self.request("DELETE", "/v1/resource-definitions/{}/resources/{}", name, node, params=params)
        )

    def make_available(self, name: str, node: str, diskful: bool = False) -> Entries:
        return rc.entries_of(
            self.request(
                "POST",
                "/v1/resource-definitions/{}/resources/{}/make-available",
                name,
                node,
                body={"diskful": diskful},
                overrides=SPACE_206,
            )
        )

    def autoplace(
        self,
        name: str,
        select_filter: Mapping[str, Any] | None = None,
        *,
        diskless_on_remaining: bool,
    ) -> Entries:
        """Autoplace; ``diskless_on_remaining`` is always stated, because the controller reads a
        missing one as false and lets it overwrite the resource group's setting."""
        body: dict[str, Any] = {"diskless_on_remaining": diskless_on_remaining}
        if select_filter:
            body["select_filter"] = dict(select_filter)
        return rc.entries_of(
            self.request(
                "POST", "/v1/resource-definitions/{}/autoplace", name, body=body, overrides=SPACE_206
            )
        )

    def get_volume(self, name: str, node: str, volume_number: int = 0) -> Volume:
        return Volume.from_wire(
            self.request(
                "GET", "/v1/resource-definitions/{}/resources/{}/volumes/{}", name, node, volume_number
            )
        )

    def view_resources(self, resources: Sequence[str] = (), nodes: Sequence[str] = ()) -> list[Resource]:
        params: dict[str, Any] = {}
        if resources:
            params["resources"] = list(resources)
        if nodes:
            params["nodes"] = list(nodes)
        return many(Resource.from_wire, self.request("GET", "/v1/view/resources", params=params or None))

    def iter_resources(self, nodes: Sequence[str] = ()) -> Iterator[Resource]:
        """Every resource with its volumes (on ``nodes`` if given), in (definition, node) order,
        a page at a time."""
        params = {"nodes": list(nodes)} if nodes else {}
        size = paging.resource_page_size(self.config.list_page_size)
        pages = paging.paged(self.request, "/v1/view/resources", params, size, paging.by_name_and_node)
        return (Resource.from_wire(wire) for wire in pages)

    # ------------------------------------------------------------------ clone

    def clone(
        self,
        source: str,
        target: str,
        *,
        resource_group: str | None = None,
        override_props: Mapping[str, str] | None = None,
        delete_props: Sequence[str] = (),
    ) -> Entries:
        body: dict[str, Any] = {"name": target}
        if override_props or delete_props:
            self.features.require(features.CLONE_PROPS)
        if resource_group:
            body["resource_group"] = resource_group
        if override_props:
            body["override_props"] = dict(override_props)
        if delete_props:
            body["delete_props"] = list(delete_props)
        return rc.entries_of(self.request("POST", "/v1/resource-definitions/{}/clone", source, body=body))

    def clone_status(self, source: str, target: str) -> str:
        answer = self.request("GET", "/v1/resource-definitions/{}/clone/{}", source, target) or {}
        return str(answer.get("status", ""))
