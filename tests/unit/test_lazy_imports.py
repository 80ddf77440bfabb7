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
        from plugin.params import parse_csi_parameters
        key = "linstor.csi.linbit.com/allowRemoteVolumeAccess"
        params = parse_csi_parameters({key: "- fromSame: [zone]"})
        from plugin.remote_access import policy_text
        print(policy_text(params.allow_remote_volume_access, params.remote_access_from_same).strip())
        """
    )
    assert out == "- fromSame:\n  - zone"
