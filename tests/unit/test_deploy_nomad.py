"""The Nomad job files and volume specification parse and agree with each other.

Nomad finds a plugin by the ``csi_plugin`` id, hands it a socket directory at
``mount_dir`` and expects node and monolith tasks to be privileged. These tests parse
every file with an HCL parser and check that the ids, types, mount directories, the
driver's own flags (mode, endpoint, driver name) and the volume specification line up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NOMAD_DIR = REPO_ROOT / "deploy" / "nomad"
DRIVER_NAME = "linstor.csi.linbit.com"
PLUGIN_JOBS = {
    "linstor-csi-controller.nomad.hcl": ("controller", "service", "controller"),
    "linstor-csi-node.nomad.hcl": ("node", "system", "node"),
    "linstor-csi-monolith.nomad.hcl": ("monolith", "system", "all"),
    "linstor-csi-tls.nomad.hcl": ("monolith", "system", "all"),
}
ACCESS_MODES = {
    "single-node-reader-only",
    "single-node-writer",
    "multi-node-reader-only",
    "multi-node-single-writer",
    "multi-node-multi-writer",
}
ATTACHMENT_MODES = {"file-system", "block-device"}


def clean(value: Any) -> Any:
    """python-hcl2 keeps string quotes and adds bookkeeping keys; strip both."""
    if isinstance(value, dict):
        return {clean(k): clean(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def load(name: str) -> dict[str, Any]:
    return clean(hcl2.load((NOMAD_DIR / name).open()))


def labelled(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``[{"label": {...}}, ...]`` as one dict by label."""
    out: dict[str, dict[str, Any]] = {}
    for block in blocks:
        for label, body in block.items():
            assert label not in out, f"duplicate block {label}"
            out[label] = body
    return out


def plugin_tasks(job_file: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(job type, task, csi_plugin) for every task of the file that declares a plugin."""
    doc = load(job_file)
    found = []
    for job in labelled(doc["job"]).values():
        for group in labelled(job["group"]).values():
            for task in labelled(group["task"]).values():
                for plugin in task.get("csi_plugin", []):
                    found.append((job["type"], task, plugin))
    return found


def flag(args: list[str], name: str) -> str | None:
    for arg in args:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def test_every_file_parses_and_is_known() -> None:
    files = sorted(p.name for p in NOMAD_DIR.glob("*.hcl"))
    assert set(PLUGIN_JOBS) <= set(files)
    for name in files:
        assert load(name), f"{name} parsed to nothing"


@pytest.mark.parametrize("job_file", sorted(PLUGIN_JOBS))
def test_plugin_job_agrees_with_the_driver_flags(job_file: str) -> None:
    plugin_type, job_type, mode = PLUGIN_JOBS[job_file]
    tasks = plugin_tasks(job_file)
    assert len(tasks) == 1, f"{job_file} must run exactly one plugin task"
    actual_job_type, task, plugin = tasks[0]
    assert actual_job_type == job_type
    assert plugin["id"] == DRIVER_NAME
    assert plugin["type"] == plugin_type
    config = task["config"][0]
    assert config["command"] == "linstor-csi"
    args = config["args"]
    assert flag(args, "--mode") == mode
    assert flag(args, "--driver-name") == DRIVER_NAME
    assert flag(args, "--node") == "${node.unique.name}"
    endpoint = flag(args, "--endpoint")
    assert endpoint is not None and endpoint.startswith("unix://")
    socket_dir = str(Path(endpoint.removeprefix("unix://")).parent)
    assert socket_dir == plugin.get("mount_dir", "/csi"), "the socket must live in the plugin's mount_dir"
    assert task["env"][0]["LS_CONTROLLERS"], "the driver needs LS_CONTROLLERS"
    metrics = flag(args, "--metrics-port")
    assert metrics is not None
    assert config.get("ports") == ["metrics"]
    if plugin_type in ("node", "monolith"):
        assert config.get("privileged") is True, "node plugins mount and need /dev: privileged"
        assert plugin.get("stage_publish_base_dir", "/local/csi").startswith("/")


def test_plugin_ids_are_the_same_in_every_job() -> None:
    ids = {plugin["id"] for job_file in PLUGIN_JOBS for _, _, plugin in plugin_tasks(job_file)}
    assert ids == {DRIVER_NAME}


def test_metrics_port_is_mapped_to_the_driver_port() -> None:
    for job_file in PLUGIN_JOBS:
        doc = load(job_file)
        for job in labelled(doc["job"]).values():
            for group in labelled(job["group"]).values():
                ports = labelled(group["network"][0]["port"])
                task = next(iter(labelled(group["task"]).values()))
                assert str(ports["metrics"]["to"]) == flag(task["config"][0]["args"], "--metrics-port")


def test_volume_spec_matches_the_plugin_and_csi_modes() -> None:
    volume = load("volume.hcl")
    assert volume["type"] == "csi"
    assert volume["plugin_id"] == DRIVER_NAME
    assert volume["capability"], "a volume needs at least one capability block"
    for capability in volume["capability"]:
        assert capability["access_mode"] in ACCESS_MODES
        assert capability["attachment_mode"] in ATTACHMENT_MODES
    assert volume["mount_options"][0]["fs_type"] in ("ext4", "xfs", "btrfs")
    params = volume["parameters"]
    assert params, "the example should show parameters"
    for key, value in params.items():
        assert isinstance(value, str)
        assert key.split("/", 1)[0] in ("linstor.csi.linbit.com", "property.linstor.csi.linbit.com"), key


def test_example_job_claims_the_example_volume_with_a_declared_capability() -> None:
    volume = load("volume.hcl")
    job = load("example-job.nomad.hcl")
    offered = {(c["access_mode"], c["attachment_mode"]) for c in volume["capability"]}
    for body in labelled(job["job"]).values():
        for group in labelled(body["group"]).values():
            claims = labelled(group["volume"])
            for claim in claims.values():
                assert claim["type"] == "csi"
                assert claim["source"] == volume["id"]
                assert (claim["access_mode"], claim["attachment_mode"]) in offered
            for task in labelled(group["task"]).values():
                for mount in task.get("volume_mount", []):
                    assert mount["volume"] in claims


def test_tasks_tell_the_doctor_their_node_name() -> None:
    for job_file in PLUGIN_JOBS:
        for _, task, _ in plugin_tasks(job_file):
            env = task["env"][0]
            assert env["LS_NODE_NAME"] == flag(task["config"][0]["args"], "--node")


def all_tasks(job_file: str) -> list[dict[str, Any]]:
    doc = load(job_file)
    return [
        task
        for job in labelled(doc["job"]).values()
        for group in labelled(job["group"]).values()
        for task in labelled(group["task"]).values()
    ]


@pytest.mark.parametrize("job_file", sorted(p.name for p in NOMAD_DIR.glob("*.nomad.hcl")))
def test_every_task_reserves_cpu_and_memory(job_file: str) -> None:
    for task in all_tasks(job_file):
        resources = task["resources"][0]
        assert resources["cpu"] > 0 and resources["memory"] > 0
        if "memory_max" in resources:
            assert resources["memory_max"] >= resources["memory"]


def test_node_tasks_may_grow_for_mkfs() -> None:
    for job_file, (plugin_type, _, _) in PLUGIN_JOBS.items():
        if plugin_type in ("node", "monolith"):
            (_, task, _) = plugin_tasks(job_file)[0]
            assert task["resources"][0]["memory_max"] >= 512, job_file


def test_tls_job_hands_the_driver_certificate_files_from_nomad_variables() -> None:
    (_, task, _) = plugin_tasks("linstor-csi-tls.nomad.hcl")[0]
    env = task["env"][0]
    doc = load("linstor-csi-tls.nomad.hcl")
    default = doc["variable"][0]["linstor_controllers"]["default"]
    assert default.startswith("https://"), "the TLS job points at an HTTPS controller"
    job_name = next(iter(labelled(doc["job"])))
    templates = {t["destination"]: t for t in task["template"]}
    for var, key in (
        ("LS_ROOT_CA", "ca_crt"),
        ("LS_USER_CERTIFICATE", "tls_crt"),
        ("LS_USER_KEY", "tls_key"),
    ):
        path = env[var]
        # The docker driver mounts the task's secrets/ at /secrets.
        assert path.startswith("/secrets/"), f"{var}={path} is not in the secrets directory"
        template = templates["secrets/" + path.removeprefix("/secrets/")]
        data = template["data"].replace('\\"', '"')  # python-hcl2 keeps the escapes
        assert f'nomadVar "nomad/jobs/{job_name}"' in data, data
        assert f"{{{{ .{key} }}}}" in data, data
        assert template["perms"] == "0600"
        assert template["change_mode"] == "restart"
    assert "--metrics-port=9810" in task["config"][0]["args"]


def test_tls_job_is_the_monolith_job_plus_tls() -> None:
    plain = plugin_tasks("linstor-csi-monolith.nomad.hcl")[0][1]
    tls = plugin_tasks("linstor-csi-tls.nomad.hcl")[0][1]
    assert tls["config"] == plain["config"]
    assert tls["csi_plugin"] == plain["csi_plugin"]
    extra = set(tls["env"][0]) - set(plain["env"][0])
    assert extra == {"LS_ROOT_CA", "LS_USER_CERTIFICATE", "LS_USER_KEY"}
