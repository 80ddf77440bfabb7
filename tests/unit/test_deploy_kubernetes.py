"""The Kubernetes manifests build, validate against the API schemas and agree with each other.

Every object of every kustomization (base, the overlays, the examples) is checked with
``kubernetes-validate`` in strict mode (unknown fields are errors). Cross-reference
checks then catch what schemas cannot: a sidecar pointed at another socket than the
driver listens on, a driver name that differs between CSIDriver, StorageClass and the
driver's flags, a service account or role that does not exist, RBAC that misses a verb a
sidecar needs, or a ``$(VAR)`` in args that the container does not define.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit import crd_schemas
from tests.unit.test_deploy_kustomize import (
    KUBERNETES_DIR,
    KUSTOMIZATIONS,
    identity,
    pod_spec,
    render,
    split_image,
)

K8S_VERSION = "1.34.0"  # oldest release the current csi-provisioner supports
DRIVER_NAME = "linstor.csi.linbit.com"
PLUGIN_IMAGE = "linstor-volume-plugin"
NAMESPACE = "linstor-csi"
# Current sidecar releases (reference/csi-notes.md section 4.1).
SIDECAR_VERSIONS = {
    "registry.k8s.io/sig-storage/csi-provisioner": "v6.3.0",
    "registry.k8s.io/sig-storage/csi-attacher": "v4.12.0",
    "registry.k8s.io/sig-storage/csi-resizer": "v2.2.1",
    "registry.k8s.io/sig-storage/csi-snapshotter": "v8.6.0",
    "registry.k8s.io/sig-storage/csi-node-driver-registrar": "v2.17.0",
    "registry.k8s.io/sig-storage/livenessprobe": "v2.19.0",
    "registry.k8s.io/sig-storage/csi-external-health-monitor-controller": "v0.18.0",
}
# What each controller sidecar does against the API (from the sidecars' own RBAC files):
# (apiGroup, resource, verbs, namespaced-only).
ALL = ("get", "list", "watch")
RBAC_NEEDS: dict[str, list[tuple[str, str, tuple[str, ...], bool]]] = {
    "csi-provisioner": [
        ("", "persistentvolumes", (*ALL, "create", "delete"), False),
        ("", "persistentvolumeclaims", (*ALL, "update"), False),
        ("storage.k8s.io", "storageclasses", ALL, False),
        ("", "events", ("create", "patch"), False),
        ("storage.k8s.io", "csinodes", ALL, False),
        ("", "nodes", ALL, False),
        ("storage.k8s.io", "volumeattachments", ALL, False),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", ("get", "list"), False),
        ("snapshot.storage.k8s.io", "volumesnapshots", ("get", "list"), False),
        ("storage.k8s.io", "csistoragecapacities", (*ALL, "create", "update", "delete"), True),
        ("", "pods", ("get",), True),
        ("apps", "replicasets", ("get",), True),
        ("coordination.k8s.io", "leases", ("get", "create", "update"), True),
    ],
    "csi-attacher": [
        ("", "persistentvolumes", (*ALL, "patch"), False),
        ("storage.k8s.io", "csinodes", ALL, False),
        ("storage.k8s.io", "volumeattachments", (*ALL, "patch"), False),
        ("storage.k8s.io", "volumeattachments/status", ("patch",), False),
        ("coordination.k8s.io", "leases", ("get", "create", "update"), True),
    ],
    "csi-resizer": [
        ("", "persistentvolumes", (*ALL, "patch"), False),
        ("", "persistentvolumeclaims", ALL, False),
        ("", "persistentvolumeclaims/status", ("patch",), False),
        ("", "pods", ("list", "watch"), False),
        ("", "events", ("create", "patch"), False),
        ("coordination.k8s.io", "leases", ("get", "create", "update"), True),
    ],
    "csi-external-health-monitor-controller": [
        ("", "persistentvolumes", ALL, False),
        ("", "persistentvolumeclaims", ALL, False),
        ("", "pods", ALL, False),
        ("", "nodes", ALL, False),
        ("", "events", ("create", "patch"), False),
        ("coordination.k8s.io", "leases", ("get", "create", "update"), True),
    ],
    "csi-snapshotter": [
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", ALL, False),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", (*ALL, "update", "patch"), False),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", ("update", "patch"), False),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", ("create",), False),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotclasses", ALL, False),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", (*ALL, "update", "patch"), False),
        ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents/status", ("update", "patch"), False),
        ("", "events", ("create", "patch"), False),
        ("coordination.k8s.io", "leases", ("get", "create", "update"), True),
    ],
}
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def builds() -> dict[str, list[Obj]]:
    return {name: render(KUBERNETES_DIR / name) for name in KUSTOMIZATIONS}


@pytest.fixture(scope="module")
def base(builds: dict[str, list[Obj]]) -> list[Obj]:
    return builds["base"]


def find(objects: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = find(objects, kind, name)
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    if spec is not None:
        yield from spec.get("containers", [])
        yield from spec.get("initContainers", [])


def image_name(container: Obj) -> str:
    name, _, _ = split_image(container["image"])
    return name


def arg_value(container: Obj, flag: str) -> str | None:
    """Value of ``--flag=value`` in args with ``$(VAR)`` expanded from the container's literal env."""
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    for arg in container.get("args", []):
        if arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
            return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)
    return None


def mount_for(obj: Obj, container: Obj, path: str) -> tuple[Obj, Obj]:
    """The volumeMount whose mountPath contains ``path`` (deepest first) and its volume."""
    mounts = sorted(container.get("volumeMounts", []), key=lambda m: -len(m["mountPath"]))
    for mount in mounts:
        root = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(root):
            volumes = {v["name"]: v for v in pod_spec(obj)["volumes"]}  # type: ignore[index]
            return mount, volumes[mount["name"]]
    raise AssertionError(f"{container['name']} mounts nothing that contains {path}")


def driver_container(obj: Obj) -> Obj:
    matches = [c for c in containers(obj) if image_name(c) == PLUGIN_IMAGE]
    assert len(matches) == 1, f"{obj['metadata']['name']} must run the plugin image once"
    return matches[0]


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if pod_spec(o) is not None]


# ---- schema validation ---------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_matches_the_kubernetes_schema(builds: dict[str, list[Obj]], name: str) -> None:
    assert builds[name], f"{name} renders no objects"
    for obj in builds[name]:
        if obj["kind"] in crd_schemas.BY_KIND:  # custom resources: no API schema to check with
            jsonschema.validate(obj, crd_schemas.BY_KIND[obj["kind"]])
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {identity(obj)} is invalid: {str(exc).splitlines()[0]}")


def test_schema_validation_catches_a_broken_object(base: list[Obj]) -> None:
    """Guard against a validator that accepts anything."""
    deployment = dict(one(base, "Deployment", "linstor-csi-controller"))
    deployment["spec"] = {**deployment["spec"], "replicaz": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# ---- cross references ----------------------------------------------------------------------


def test_namespaced_objects_live_in_the_plugin_namespace(base: list[Obj]) -> None:
    one(base, "Namespace", NAMESPACE)
    for obj in base:
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CSIDriver"):
            assert obj["metadata"].get("namespace") == NAMESPACE, identity(obj)


def test_driver_name_agrees_everywhere(builds: dict[str, list[Obj]]) -> None:
    base = builds["base"]
    csidriver = one(base, "CSIDriver", DRIVER_NAME)
    spec = csidriver["spec"]
    assert spec["attachRequired"] is True
    assert spec["podInfoOnMount"] is True
    assert spec["fsGroupPolicy"] == "ReadWriteOnceWithFSType"
    assert spec["storageCapacity"] is True
    assert spec["volumeLifecycleModes"] == ["Persistent"]
    for workload in workloads(base):
        assert arg_value(driver_container(workload), "--driver-name") == DRIVER_NAME
    registrar = next(
        c for c in containers(one(base, "DaemonSet", "linstor-csi-node")) if "registrar" in c["name"]
    )
    assert f"/plugins/{DRIVER_NAME}/" in arg_value(registrar, "--kubelet-registration-path")  # type: ignore[operator]
    classes = find(builds["examples"], "StorageClass")
    assert len(classes) >= 3
    assert {sc["provisioner"] for sc in classes} == {DRIVER_NAME}
    assert {vsc["driver"] for vsc in find(builds["examples"], "VolumeSnapshotClass")} == {DRIVER_NAME}
    (group_class,) = find(builds["examples"], "VolumeGroupSnapshotClass")
    assert group_class["driver"] == DRIVER_NAME


def test_every_sidecar_talks_to_the_socket_the_driver_serves(base: list[Obj]) -> None:
    for workload in workloads(base):
        driver = driver_container(workload)
        endpoint = arg_value(driver, "--endpoint")
        assert endpoint is not None and endpoint.startswith("unix://"), endpoint
        socket_path = endpoint.removeprefix("unix://")
        _, driver_volume = mount_for(workload, driver, socket_path)
        sidecars = [c for c in containers(workload) if c is not driver]
        assert sidecars, f"{workload['metadata']['name']} has no sidecars"
        for sidecar in sidecars:
            address = arg_value(sidecar, "--csi-address")
            assert address == socket_path, f"{sidecar['name']} dials {address}, driver serves {socket_path}"
            _, volume = mount_for(workload, sidecar, address)
            assert volume == driver_volume, f"{sidecar['name']} sees another socket directory"


def test_registration_path_is_the_host_side_of_the_driver_socket(base: list[Obj]) -> None:
    node = one(base, "DaemonSet", "linstor-csi-node")
    driver = driver_container(node)
    socket_path = arg_value(driver, "--endpoint").removeprefix("unix://")  # type: ignore[union-attr]
    mount, volume = mount_for(node, driver, socket_path)
    host_socket = volume["hostPath"]["path"] + socket_path.removeprefix(mount["mountPath"])
    registrar = next(c for c in containers(node) if "registrar" in c["name"])
    assert arg_value(registrar, "--kubelet-registration-path") == host_socket
    _, reg_volume = mount_for(node, registrar, "/registration/x")
    assert reg_volume["hostPath"]["path"] == "/var/lib/kubelet/plugins_registry"


def test_node_plugin_has_the_privileges_and_host_paths_it_needs(base: list[Obj]) -> None:
    node = one(base, "DaemonSet", "linstor-csi-node")
    driver = driver_container(node)
    assert driver["securityContext"]["privileged"] is True
    assert arg_value(driver, "--mode") == "node"
    assert arg_value(driver, "--node") == "$(NODE_NAME)"
    node_env = {e["name"]: e for e in driver["env"]}
    assert node_env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    kubelet_mount, kubelet_volume = mount_for(node, driver, "/var/lib/kubelet/pods/x")
    assert kubelet_mount["mountPropagation"] == "Bidirectional"
    assert kubelet_volume["hostPath"]["path"] == kubelet_mount["mountPath"] == "/var/lib/kubelet"
    dev_mount, dev_volume = mount_for(node, driver, "/dev/drbd1000")
    assert dev_volume["hostPath"]["path"] == dev_mount["mountPath"] == "/dev"
    controller = driver_container(one(base, "Deployment", "linstor-csi-controller"))
    assert arg_value(controller, "--mode") == "controller"


def test_container_arg_variables_are_defined(base: list[Obj]) -> None:
    """Kubernetes leaves an undefined $(VAR) in args as literal text; catch that here."""
    for workload in workloads(base):
        for container in containers(workload):
            defined = {e["name"] for e in container.get("env", [])}
            for arg in container.get("args", []) + container.get("command", []):
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in defined, f"{container['name']} uses $({var}) but does not define it"


def test_config_references_exist(builds: dict[str, list[Obj]]) -> None:
    for name in ("base", "overlays/tls"):
        objects = builds[name]
        configmaps = {o["metadata"]["name"]: o for o in find(objects, "ConfigMap")}
        for workload in workloads(objects):
            for container in containers(workload):
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("configMapKeyRef")
                    if ref:
                        assert ref["key"] in configmaps[ref["name"]]["data"], env["name"]


def test_probes_point_at_declared_ports(base: list[Obj]) -> None:
    for workload in workloads(base):
        ports_by_name: dict[str, int] = {}
        listening: dict[int, str] = {}
        for container in containers(workload):
            for port in container.get("ports", []):
                ports_by_name[port["name"]] = port["containerPort"]
        for container in containers(workload):
            for flag in ("--health-port", "--http-endpoint", "--metrics-port"):
                value = arg_value(container, flag)
                if value is not None:
                    port = int(value.rsplit(":", 1)[-1])
                    assert port not in listening, (
                        f"{container['name']} and {listening.get(port)} share {port}"
                    )
                    listening[port] = container["name"]
        for container in containers(workload):
            probe = container.get("livenessProbe")
            if probe:
                port = probe["httpGet"]["port"]
                number = ports_by_name[port] if isinstance(port, str) else port
                assert number in listening, f"{container['name']} probes {port}, which nothing serves"


def test_images_are_pinned_to_current_sidecar_releases(base: list[Obj]) -> None:
    seen: set[str] = set()
    for workload in workloads(base):
        for container in containers(workload):
            if image_name(container) == PLUGIN_IMAGE:
                assert ":" in container["image"], "plugin image must carry a tag"
                continue
            name, tag = container["image"].rsplit(":", 1)
            assert SIDECAR_VERSIONS.get(name) == tag, container["image"]
            seen.add(name)
    assert seen == set(SIDECAR_VERSIONS)


def _rules_for(objects: list[Obj], account: str, namespace: str) -> list[tuple[Obj, bool]]:
    """(rule, namespaced) pairs granted to a service account by the rendered RBAC objects."""
    granted: list[tuple[Obj, bool]] = []
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        for binding in find(objects, kind):
            subjects = binding.get("subjects", [])
            if not any(
                s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace") == namespace
                for s in subjects
            ):
                continue
            ref = binding["roleRef"]
            assert ref["kind"] in ("ClusterRole", role_kind)
            role = one(objects, ref["kind"], ref["name"])
            if ref["kind"] == "Role":
                assert role["metadata"]["namespace"] == binding["metadata"]["namespace"]
            granted.extend((rule, kind == "RoleBinding") for rule in role.get("rules", []))
    return granted


def _covers(
    granted: list[tuple[Obj, bool]], group: str, resource: str, verbs: tuple[str, ...], ns_ok: bool
) -> bool:
    have: set[str] = set()
    for rule, namespaced in granted:
        if namespaced and not ns_ok:
            continue
        if group in rule.get("apiGroups", []) and resource in rule.get("resources", []):
            have |= set(rule.get("verbs", []))
    return "*" in have or set(verbs) <= have


def test_service_accounts_exist_and_rbac_covers_each_sidecar(base: list[Obj]) -> None:
    accounts = {o["metadata"]["name"] for o in find(base, "ServiceAccount")}
    for workload in workloads(base):
        account = pod_spec(workload)["serviceAccountName"]  # type: ignore[index]
        assert account in accounts, f"{workload['metadata']['name']} uses a missing service account"
        granted = _rules_for(base, account, workload["metadata"]["namespace"])
        for container in containers(workload):
            sidecar = image_name(container).rsplit("/", 1)[-1]
            for group, resource, verbs, ns_ok in RBAC_NEEDS.get(sidecar, []):
                assert _covers(granted, group, resource, verbs, ns_ok), (
                    f"{sidecar} needs {verbs} on {group or 'core'}/{resource}"
                )
    for binding in find(base, "ClusterRoleBinding") + find(base, "RoleBinding"):
        for subject in binding["subjects"]:
            assert subject["name"] in accounts and subject["namespace"] == NAMESPACE


def test_rbac_check_notices_a_missing_grant(base: list[Obj]) -> None:
    """The coverage check must fail when a needed rule is missing."""
    granted = _rules_for(base, "linstor-csi-controller", NAMESPACE)
    without_status = [
        (r, ns) for r, ns in granted if "volumeattachments/status" not in r.get("resources", [])
    ]
    assert _covers(granted, "storage.k8s.io", "volumeattachments/status", ("patch",), False)
    assert not _covers(without_status, "storage.k8s.io", "volumeattachments/status", ("patch",), False)


def test_controller_sidecars_run_with_the_features_the_driver_supports(base: list[Obj]) -> None:
    controller = one(base, "Deployment", "linstor-csi-controller")
    by_name = {image_name(c).rsplit("/", 1)[-1]: c for c in containers(controller)}
    provisioner = by_name["csi-provisioner"]["args"]
    for flag in (
        "--extra-create-metadata",
        "--enable-capacity",
        "--feature-gates=Topology=true",
        "--leader-election",
    ):
        assert flag in provisioner
    env = {e["name"] for e in by_name["csi-provisioner"]["env"]}
    assert {"POD_NAME", "NAMESPACE"} <= env, "capacity tracking needs POD_NAME and NAMESPACE"
    assert "--handle-volume-inuse-error=false" in by_name["csi-resizer"]["args"]
    # The driver serves the GroupController; the snapshotter calls it only with the gate on.
    assert "--feature-gates=CSIVolumeGroupSnapshot=true" in by_name["csi-snapshotter"]["args"]
    for sidecar in (
        "csi-attacher",
        "csi-resizer",
        "csi-snapshotter",
        "csi-external-health-monitor-controller",
    ):
        assert "--leader-election" in by_name[sidecar]["args"]


def test_storage_class_examples(builds: dict[str, list[Obj]]) -> None:
    classes = {sc["metadata"]["name"]: sc for sc in find(builds["examples"], "StorageClass")}
    single = classes["linstor-single"]["parameters"]
    assert single["linstor.csi.linbit.com/placementCount"] == "1"
    replicated = classes["linstor-replicated"]["parameters"]
    assert replicated["linstor.csi.linbit.com/placementCount"] == "2"
    assert "property.linstor.csi.linbit.com/DrbdOptions/PeerDevice/c-max-rate" in replicated
    xfs = classes["linstor-xfs"]
    assert xfs["parameters"]["csi.storage.k8s.io/fstype"] == "xfs"
    assert xfs["mountOptions"]
    for sc in classes.values():
        for key, value in sc["parameters"].items():
            assert isinstance(value, str), f"{key}: StorageClass parameters must be strings"
            prefix = key.split("/", 1)[0]
            assert prefix in (
                "linstor.csi.linbit.com",
                "property.linstor.csi.linbit.com",
                "csi.storage.k8s.io",
            )


def test_tls_overlay_points_both_workloads_at_the_tls_secret(builds: dict[str, list[Obj]]) -> None:
    tls = builds["overlays/tls"]
    config = one(tls, "ConfigMap", "linstor-csi-config")
    assert config["data"]["LS_CONTROLLERS"].startswith("https://")
    base_workloads = {w["metadata"]["name"] for w in workloads(builds["base"])}
    assert {w["metadata"]["name"] for w in workloads(tls)} == base_workloads
    for workload in workloads(tls):
        driver = driver_container(workload)
        env = {e["name"]: e.get("value") for e in driver["env"]}
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}  # type: ignore[index]
        for var, key in (
            ("LS_ROOT_CA", "ca.crt"),
            ("LS_USER_CERTIFICATE", "tls.crt"),
            ("LS_USER_KEY", "tls.key"),
        ):
            path = env[var]
            assert path is not None and path.endswith("/" + key), f"{var}={path}"
            mount, volume = mount_for(workload, driver, path)
            assert mount.get("readOnly") is True
            assert volume == volumes["linstor-client-tls"]
            assert volume["secret"]["secretName"] == "linstor-client-tls"
    # The base itself stays plain HTTP and carries no secret references.
    for workload in workloads(builds["base"]):
        assert "LS_USER_KEY" not in {e["name"] for e in driver_container(workload)["env"]}


def test_kustomizations_list_every_manifest_file() -> None:
    """A YAML file nobody references is a file that is never applied or tested."""
    referenced: set[Path] = set()
    for kfile in KUBERNETES_DIR.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kfile.read_text())
        referenced.add(kfile.resolve())
        for entry in spec.get("resources", []):
            referenced.add((kfile.parent / entry).resolve())
        for patch in spec.get("patches", []):
            if "path" in patch:
                referenced.add((kfile.parent / patch["path"]).resolve())
    for path in KUBERNETES_DIR.rglob("*.yaml"):
        assert path.resolve() in referenced, (
            f"{path.relative_to(KUBERNETES_DIR)} is not used by any kustomization"
        )
