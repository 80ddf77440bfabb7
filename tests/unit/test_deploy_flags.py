"""Every command line in deploy/ is accepted by the daemon it starts.

The manifests and job files are written against the driver's flags; a renamed or
removed flag would only show when a pod crash-loops. Here each command line is parsed
with the real argument parser of ``linstor-csi`` (placeholders such as ``$(NODE_NAME)``
or ``${node.unique.name}`` stand for a node name), and the driver name in every file is
the driver's built-in default, so the default deployment needs no ``--driver-name`` at all.
The example StorageClass and Nomad volume parameters go through the real parameter model,
and the TLS overlay's environment through the real config loader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from csi import cli as csi_cli
from csi import keys
from plugin.config import load_config
from plugin.params.csi import parse_csi_parameters
from tests.unit.test_deploy_kubernetes import containers, driver_container, workloads
from tests.unit.test_deploy_kustomize import KUBERNETES_DIR, render
from tests.unit.test_deploy_nomad import PLUGIN_JOBS, load, plugin_tasks


def parse(argv: list[str], env: dict[str, str] | None = None) -> object:
    """Parse with $(VAR) taken from ``env``; other placeholders stand for a node name."""
    env = env or {}
    expanded = [
        re.sub(r"\$\((\w+)\)|\$\{[^}]+\}", lambda m: env.get(m.group(1) or "", "node-1"), arg) for arg in argv
    ]
    try:
        return csi_cli.build_parser().parse_args(expanded)
    except SystemExit:
        pytest.fail(f"linstor-csi rejects {argv}")


def test_default_driver_name_is_the_official_one() -> None:
    assert keys.DEFAULT_DRIVER_NAME == "linstor.csi.linbit.com"


@pytest.mark.parametrize("overlay", ["base", "overlays/tls"])
def test_kubernetes_driver_args_parse(overlay: str) -> None:
    objects = render(KUBERNETES_DIR / overlay)
    configmaps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    for workload in workloads(objects):
        driver = driver_container(workload)
        assert driver["command"] == ["linstor-csi"]
        env: dict[str, str] = {}
        for var in driver["env"]:
            ref = var.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                env[var["name"]] = configmaps[ref["name"]][ref["key"]]
            elif "value" in var:
                env[var["name"]] = var["value"]
        args = parse(driver["args"], env)
        assert args.log_level == "info"  # type: ignore[attr-defined]
        assert args.endpoint == "unix:///csi/csi.sock"  # type: ignore[attr-defined]
        assert args.driver_name == keys.DEFAULT_DRIVER_NAME  # type: ignore[attr-defined]
        assert args.node == "node-1"  # type: ignore[attr-defined]
        assert args.metrics_port > 0  # type: ignore[attr-defined]
        assert len(list(containers(workload))) > 1


@pytest.mark.parametrize("job_file", sorted(PLUGIN_JOBS))
def test_nomad_driver_args_parse(job_file: str) -> None:
    for _, task, plugin in plugin_tasks(job_file):
        args = parse(task["config"][0]["args"])
        assert args.driver_name == keys.DEFAULT_DRIVER_NAME  # type: ignore[attr-defined]
        assert args.mode == PLUGIN_JOBS[job_file][2]  # type: ignore[attr-defined]
        assert args.endpoint == f"unix://{plugin['mount_dir']}/csi.sock"  # type: ignore[attr-defined]


def test_a_wrong_flag_is_caught() -> None:
    """The parse helper must fail on an unknown flag, or the tests above prove nothing."""
    with pytest.raises(pytest.fail.Exception):
        parse(["--endpoint=unix:///csi/csi.sock", "--no-such-flag=1"])


def _example_classes() -> list[dict[str, object]]:
    return [o for o in render(KUBERNETES_DIR / "examples") if o["kind"] == "StorageClass"]


@pytest.mark.parametrize("name", ["linstor-single", "linstor-replicated", "linstor-xfs"])
def test_storage_class_parameters_are_accepted_by_the_driver(name: str) -> None:
    """As the provisioner sends them: csi.storage.k8s.io/ keys are consumed and stripped first."""
    sc = next(o for o in _example_classes() if o["metadata"]["name"] == name)  # type: ignore[index]
    sent = {k: v for k, v in sc["parameters"].items() if not k.startswith("csi.storage.k8s.io/")}  # type: ignore[union-attr]
    params = parse_csi_parameters(sent)
    assert params.place_count == int(sc["parameters"]["linstor.csi.linbit.com/placementCount"])  # type: ignore[index]
    props = dict(params.properties)
    for key, value in sent.items():
        if key.startswith("property.linstor.csi.linbit.com/"):
            assert props[key.split("/", 1)[1]] == value


def test_nomad_volume_parameters_are_accepted_by_the_driver() -> None:
    params = parse_csi_parameters(load("volume.hcl")["parameters"])
    assert params.place_count == 2
    assert dict(params.properties)["DrbdOptions/PeerDevice/c-max-rate"] == "102400"


def test_tls_overlay_environment_is_what_the_config_loader_expects(tmp_path: Path) -> None:
    """The overlay's LS_* values, with its mount directory moved to a temp dir, load cleanly."""
    objects = render(KUBERNETES_DIR / "overlays/tls")
    controllers = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["LS_CONTROLLERS"]
    for workload in workloads(objects):
        env = {e["name"]: e["value"] for e in driver_container(workload)["env"] if "value" in e}
        moved = {}
        for var in ("LS_ROOT_CA", "LS_USER_CERTIFICATE", "LS_USER_KEY"):
            local = tmp_path / Path(env[var]).name
            local.write_text("-----BEGIN PLACEHOLDER-----\n")
            moved[var] = str(local)
        config = load_config(env={"LS_CONTROLLERS": controllers, **moved}, config_file=None)
        assert config.controllers == (controllers,)
        assert (config.root_ca, config.user_certificate, config.user_key) == (
            moved["LS_ROOT_CA"],
            moved["LS_USER_CERTIFICATE"],
            moved["LS_USER_KEY"],
        )


# The Piraeus operator's command lines for LINBIT's driver (linstor-csi-notes, section 5).
OPERATOR_CONTROLLER_ARGS = [
    "--csi-endpoint=unix:///csi/csi.sock",
    "--property-namespace=Aux/topology",
    "--label-by-storage-pool=false",
]
OPERATOR_NODE_ARGS = [*OPERATOR_CONTROLLER_ARGS, "--node=$(KUBE_NODE_NAME)"]


def test_the_official_drivers_command_lines_run_this_driver() -> None:
    args = parse(
        [*OPERATOR_NODE_ARGS, "--linstor-endpoint=https://linstor-controller:3371", "--log-level=warn"]
    )
    assert args.endpoint == "unix:///csi/csi.sock"  # type: ignore[attr-defined]
    assert args.node == "node-1"  # type: ignore[attr-defined]
    assert args.property_namespace == "Aux/topology"  # type: ignore[attr-defined]
    assert args.label_by_storage_pool is False  # type: ignore[attr-defined]
    assert args.linstor_endpoint == "https://linstor-controller:3371"  # type: ignore[attr-defined]
    assert args.log_level == "warning"  # type: ignore[attr-defined]
    assert parse(["--label-by-storage-pool"]).label_by_storage_pool is True  # type: ignore[attr-defined]
    assert parse([]).label_by_storage_pool is None  # type: ignore[attr-defined]
    assert parse(["--log-level", "trace"]).log_level == "debug"  # type: ignore[attr-defined]


def test_official_tuning_flags_are_accepted_and_remembered_for_a_warning() -> None:
    args = parse(["--resync-after=5m", "--node-cache-timeout", "1m", "--linstor-api-burst=3"])
    assert args.ignored_flags == ["--resync-after", "--node-cache-timeout", "--linstor-api-burst"]  # type: ignore[attr-defined]
    assert set(csi_cli.IGNORED_OFFICIAL_FLAGS).isdisjoint(csi_cli.UNSUPPORTED_OFFICIAL_FLAGS)


@pytest.mark.parametrize(
    ("flag", "needle"),
    [
        ("--enable-rwx", "ReadWriteMany"),
        ("--enable-rwx=true", "ReadWriteMany"),
        ("--linstor-skip-tls-verification", "LS_ROOT_CA"),
        ("--bearer-token=/etc/token", "LS_USER_CERTIFICATE"),
        ("--default-remote-access-policy=false", "allowRemoteVolumeAccess"),
    ],
)
def test_official_feature_flags_this_driver_lacks_stop_the_start(
    flag: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        csi_cli.build_parser().parse_args(["--endpoint=unix:///csi/csi.sock", flag])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert flag.split("=")[0] in err and needle in err and "does not support" in err


@pytest.mark.parametrize(
    "flag", ["--enable-rwx=false", "--linstor-skip-tls-verification=false", "--bearer-token="]
)
def test_official_feature_flags_switched_off_are_harmless(flag: str) -> None:
    parse(["--endpoint=unix:///csi/csi.sock", flag])
