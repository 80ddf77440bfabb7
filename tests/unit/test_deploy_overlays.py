"""Resources, disruption budget and the optional overlays of deploy/kubernetes agree with the rest.

Schema validation of every rendered object is in test_deploy_kubernetes.py. Here: every
container has requests and a memory limit; the controller's PodDisruptionBudget selects its
pods and lets a drain proceed; the monitoring overlay's Services and ServiceMonitor reach the
driver's metrics port; and the Piraeus overlay's patch turns the operator's CSI pods into
pods of this image that start with the operator's own arguments.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import kubernetes_validate
import pytest

from csi import cli as csi_cli
from tests.unit.test_deploy_kubernetes import (
    K8S_VERSION,
    NAMESPACE,
    PLUGIN_IMAGE,
    arg_value,
    containers,
    driver_container,
    find,
    one,
    workloads,
)
from tests.unit.test_deploy_kustomize import KUBERNETES_DIR, KUSTOMIZATIONS, pod_spec, render, split_image

Obj = dict[str, Any]
REPO_ROOT = KUBERNETES_DIR.parents[1]
VERSION = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
# The Piraeus operator's CSI workloads (pkg/resources/cluster/csi-*/ in piraeus-operator v2):
# the driver container's name and the arguments the operator gives it.
OPERATOR_CONTAINER = "linstor-csi"
OPERATOR_ARGS = {
    "csiController": ["--csi-endpoint=unix:///csi/csi.sock", "--property-namespace=Aux/topology",
                      "--label-by-storage-pool=false"],
    "csiNode": ["--csi-endpoint=unix:///csi/csi.sock", "--node=node-1", "--property-namespace=Aux/topology",
                "--label-by-storage-pool=false"],
}  # fmt: skip
UNITS = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 0.001, "k": 10**3, "M": 10**6, "G": 10**9}


@pytest.fixture(scope="module")
def builds() -> dict[str, list[Obj]]:
    return {name: render(KUBERNETES_DIR / name) for name in KUSTOMIZATIONS}


def quantity(value: str | int) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and match.group(2) in UNITS, f"not a quantity: {value}"
    return float(match.group(1)) * UNITS[match.group(2)]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# ---- resources ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_container_has_requests_and_a_memory_limit(builds: dict[str, list[Obj]], name: str) -> None:
    for workload in workloads(builds[name]):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            requests, limits = resources.get("requests", {}), resources.get("limits", {})
            assert {"cpu", "memory"} <= set(requests), f"{where} requests no cpu and memory"
            assert "memory" in limits, f"{where} has no memory limit"
            assert quantity(limits["memory"]) >= quantity(requests["memory"]), where
            assert "cpu" not in limits, f"{where}: a CPU limit only throttles mounts and mkfs"


def test_the_node_driver_has_room_for_mkfs(builds: dict[str, list[Obj]]) -> None:
    node = driver_container(one(builds["base"], "DaemonSet", "linstor-csi-node"))
    assert quantity(node["resources"]["limits"]["memory"]) >= 512 * 2**20


# ---- disruption budget ----------------------------------------------------------------------


def test_controller_disruption_budget_keeps_one_replica_and_allows_a_drain(
    builds: dict[str, list[Obj]],
) -> None:
    base = builds["base"]
    pdb = one(base, "PodDisruptionBudget", "linstor-csi-controller")
    assert pdb["metadata"]["namespace"] == NAMESPACE
    controller = one(base, "Deployment", "linstor-csi-controller")
    labels = controller["spec"]["template"]["metadata"]["labels"]
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert matches(selector, labels), "the budget must select the controller's pods"
    for other in workloads(base):
        if other is not controller:
            assert not matches(selector, other["spec"]["template"]["metadata"]["labels"])
    replicas = controller["spec"]["replicas"]
    assert "minAvailable" not in pdb["spec"]
    assert 1 <= pdb["spec"]["maxUnavailable"] < replicas, "a drain may proceed, one replica stays"
    spread = pod_spec(controller)["affinity"]["podAntiAffinity"]  # type: ignore[index]
    term = spread["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert matches(term["labelSelector"]["matchLabels"], labels), "replicas spread over nodes"


# ---- monitoring overlay ---------------------------------------------------------------------


def test_monitoring_overlay_is_the_base_plus_services_and_a_service_monitor(
    builds: dict[str, list[Obj]],
) -> None:
    monitoring = builds["overlays/monitoring"]
    base_ids = {(o["kind"], o["metadata"]["name"]) for o in builds["base"]}
    extra = [o for o in monitoring if (o["kind"], o["metadata"]["name"]) not in base_ids]
    assert sorted(o["kind"] for o in extra) == ["Service", "Service", "ServiceMonitor"]
    for obj in monitoring:
        if obj["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CSIDriver"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


def test_metrics_services_reach_the_driver_metrics_port_of_each_workload(
    builds: dict[str, list[Obj]],
) -> None:
    monitoring = builds["overlays/monitoring"]
    services = find(monitoring, "Service")
    covered = set()
    for service in services:
        assert service["spec"]["clusterIP"] == "None", "headless: Prometheus scrapes every pod"
        selected = [
            w
            for w in workloads(monitoring)
            if matches(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"{service['metadata']['name']} selects {len(selected)} workloads"
        workload = selected[0]
        driver = driver_container(workload)
        ports = {p["name"]: p["containerPort"] for p in driver["ports"]}
        port = service["spec"]["ports"][0]
        assert port["targetPort"] in ports, f"{service['metadata']['name']} targets an undeclared port"
        assert str(ports[port["targetPort"]]) == arg_value(driver, "--metrics-port")
        covered.add(workload["metadata"]["name"])
    assert covered == {w["metadata"]["name"] for w in workloads(monitoring)}


def test_service_monitor_selects_the_metrics_services_and_their_port(builds: dict[str, list[Obj]]) -> None:
    monitoring = builds["overlays/monitoring"]
    monitor = one(monitoring, "ServiceMonitor", "linstor-csi")
    spec = monitor["spec"]
    assert NAMESPACE in spec["namespaceSelector"]["matchNames"]
    selected = [
        s
        for s in find(monitoring, "Service")
        if matches(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert {s["metadata"]["name"] for s in selected} == {
        s["metadata"]["name"] for s in find(monitoring, "Service")
    }
    for endpoint in spec["endpoints"]:
        assert endpoint["path"] == "/metrics"
        for service in selected:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


# ---- Piraeus operator overlay ---------------------------------------------------------------


def test_piraeus_overlay_patches_the_operators_csi_pods_to_run_this_image(
    builds: dict[str, list[Obj]],
) -> None:
    cluster = one(builds["overlays/piraeus"], "LinstorCluster", "linstorcluster")
    for component, operator_args in OPERATOR_ARGS.items():
        settings = cluster["spec"][component]
        assert settings["enabled"] is True
        template = settings["podTemplate"]
        # The podTemplate is a pod template: validate it as one.
        kubernetes_validate.validate(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": component},
                "template": template,
            },
            K8S_VERSION,
            strict=True,
        )
        spec = template["spec"]
        (container,) = spec["containers"]
        assert container["name"] == OPERATOR_CONTAINER, "merged into the operator's container by name"
        name, tag, _ = split_image(container["image"])
        assert (name, tag) == (PLUGIN_IMAGE, VERSION)
        assert container["command"] == ["linstor-csi"], "the image has no entrypoint: the command is needed"
        # The operator's own arguments start this driver.
        parsed = csi_cli.build_parser().parse_args(operator_args)
        assert parsed.endpoint == "unix:///csi/csi.sock"
        assert parsed.property_namespace == "Aux/topology"
        # A writable /tmp on the operator's read-only root filesystem, from a volume of the template.
        tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
        volume = next(v for v in spec["volumes"] if v["name"] == tmp["name"])
        assert volume == {"name": tmp["name"], "emptyDir": {}}


def test_piraeus_overlay_is_documented_with_the_patch_command() -> None:
    text = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    assert "deploy/kubernetes/overlays/piraeus/use-linstor-volume-plugin.yaml" in text
    assert "kubectl patch linstorcluster" in text
    assert "LinstorSatelliteConfiguration" in text
