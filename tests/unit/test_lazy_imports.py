"""The daemons import their optional parts on first use, and those parts still work then.

Start-up time is mostly imports, so modules only some features need (YAML for map and
list parameters, the Kubernetes client for consistency groups, ...) are imported where
they are used. Each test starts a fresh interpreter, imports a daemon's entry module as
its start does, checks the module is not loaded yet, then uses the feature.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO_ROOT


def run_fresh(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_yaml_is_loaded_by_the_first_map_parameter_not_by_start() -> None:
    out = run_fresh(
        """
        import sys
        import csi.cli, docker_plugin.cli
        assert "yaml" not in sys.modules, "yaml imported at start"
        from plugin.params.csi import parse_csi_parameters
        key = "linstor.csi.linbit.com/allowRemoteVolumeAccess"
        params = parse_csi_parameters({key: "- fromSame: [zone]"})
        from plugin.remote_access import policy_text
        print(policy_text(params.allow_remote_volume_access, params.remote_access_from_same).strip())
        """
    )
    assert out == "- fromSame:\n  - zone"


def test_the_csi_driver_listens_before_the_core_is_imported_and_serves_once_warm() -> None:
    out = run_fresh(
        """
        import logging, sys, tempfile
        import grpc
        from csi import cli
        from csi.generated import csi_pb2
        from csi.testing import CsiClient

        logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
        sock = tempfile.mkdtemp(prefix="lazy-") + "/csi.sock"
        args = cli.build_parser().parse_args([
            "--endpoint", "unix://" + sock, "--node", "n1", "--controllers", "http://127.0.0.1:9",
            "--mode", "controller", "--enable-consistency-groups",
        ])
        driver = cli._build_driver(args)
        heavy = (
            "csi.controller", "plugin.volumes.service", "plugin.backups", "kubernetes", "yaml",
            "plugin.params.keys", "plugin.params.fs_options",
        )
        loaded = [name for name in heavy if name in sys.modules]
        assert not loaded, f"imported before listening: {loaded}"
        driver.start()
        try:
            assert driver.wait_warm(60)
            with grpc.insecure_channel("unix://" + sock) as channel:
                client = CsiClient(channel)
                caps = client.controller.ControllerGetCapabilities(csi_pb2.ControllerGetCapabilitiesRequest())
                print("capabilities", len(caps.capabilities) > 5)
                print("probe", client.identity.Probe(csi_pb2.ProbeRequest()).ready.value)
        finally:
            driver.stop(0)
        """
    )
    # the controller at port 9 never answers; outside a pod consistency groups stay off, said at warm-up
    assert "capabilities True" in out and "probe False" in out
    assert "consistency groups stay off" in out


def test_metric_series_are_preregistered_only_by_a_driver_that_serves_metrics() -> None:
    out = run_fresh(
        """
        import tempfile
        from prometheus_client import REGISTRY
        from csi import cli

        def probe_series():
            return REGISTRY.get_sample_value(
                "linstor_plugin_operation_seconds_count", {"frontend": "csi", "operation": "Probe"}
            )

        sock = tempfile.mkdtemp(prefix="lazy-") + "/csi.sock"
        args = cli.build_parser().parse_args([
            "--endpoint", "unix://" + sock, "--node", "n1", "--controllers", "http://127.0.0.1:9",
        ])
        driver = cli._build_driver(args)
        print("without metrics", probe_series())
        driver.preregister_metrics()
        print("served", probe_series())
        """
    )
    assert out.splitlines() == ["without metrics None", "served 0.0"]
