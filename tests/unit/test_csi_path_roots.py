"""Where the CSI node service may work: below its path roots, however a path is spelt.

Relative paths are refused naming the field; ``..`` and symlinks never lead outside a
root; a root may itself be a symlink; the deployments pass the root their CO uses
(kubelet's directory by default, Nomad's ``stage_publish_base_dir`` in its jobs). The
node service against real mounts is in tests/integration/test_csi_confinement.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from csi import cli as csi_cli
from csi.validation import DEFAULT_PATH_ROOTS, PathRoots
from plugin.errors import InvalidArgument
from tests.unit.test_deploy_kubernetes import driver_container
from tests.unit.test_deploy_kustomize import KUBERNETES_DIR, render
from tests.unit.test_deploy_nomad import PLUGIN_JOBS, plugin_tasks

# ---------------------------------------------------------------- path roots


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "kubelet"
    path.mkdir()
    return path


def test_a_path_below_a_root_comes_back_resolved(root: Path) -> None:
    roots = PathRoots([str(root)])
    (root / "pods").mkdir()
    (root / "alias").symlink_to(root / "pods")
    assert roots.confine(f"{root}/pods/a/../b", "target_path") == f"{root}/pods/b"
    assert roots.confine(f"{root}/alias/x", "target_path") == f"{root}/pods/x"


@pytest.mark.parametrize("path", [".", "..", "pods/x", "./x", "~/x"])
def test_relative_paths_are_invalid_and_name_the_field(root: Path, path: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^volume_path must be an absolute path"):
        PathRoots([str(root)]).confine(path, "volume_path")


def test_paths_outside_are_invalid_however_they_are_spelt(root: Path, tmp_path: Path) -> None:
    roots = PathRoots([str(root)])
    (root / "out").symlink_to(tmp_path)
    for path in ("/", "/etc", str(root), f"{root}/", f"{root}/../x", f"{root}/out/x", f"{root}x/y"):
        with pytest.raises(InvalidArgument, match=r"^staging_target_path .* is outside"):
            roots.confine(path, "staging_target_path")


def test_empty_and_nul_paths_are_invalid(root: Path) -> None:
    roots = PathRoots([str(root)])
    with pytest.raises(InvalidArgument, match="target_path is required"):
        roots.confine("", "target_path")
    with pytest.raises(InvalidArgument, match="NUL"):
        roots.confine(f"{root}/a\x00b", "target_path")


def test_a_root_that_is_a_symlink_still_confines(root: Path, tmp_path: Path) -> None:
    """kubelet's directory is often a symlink to a bigger disk."""
    link = tmp_path / "var-lib-kubelet"
    link.symlink_to(root)
    roots = PathRoots([str(link)])
    assert roots.confine(f"{link}/pods/x", "target_path") == f"{root}/pods/x"
    assert roots.confine(f"{root}/pods/x", "target_path") == f"{root}/pods/x"
    with pytest.raises(InvalidArgument):
        roots.confine(f"{tmp_path}/elsewhere", "target_path")


@pytest.mark.parametrize(
    ("roots", "needle"), [([], "at least one"), (["/"], "confine nothing"), (["rel"], "absolute")]
)
def test_bad_roots_are_refused(roots: list[str], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        PathRoots(roots)


def test_the_flag_repeats_and_defaults_to_kubelets_directory() -> None:
    assert DEFAULT_PATH_ROOTS == ("/var/lib/kubelet",)
    parser = csi_cli.build_parser()
    assert parser.parse_args([]).path_roots is None  # the driver then uses DEFAULT_PATH_ROOTS
    args = parser.parse_args(["--path-root=/local/csi", "--path-root", "/srv/csi"])
    assert args.path_roots == ["/local/csi", "/srv/csi"]


# ---------------------------------------------------------------- deployments


@pytest.mark.parametrize("job_file", sorted(PLUGIN_JOBS))
def test_nomad_node_jobs_pass_their_stage_publish_base_dir(job_file: str) -> None:
    for _, task, plugin in plugin_tasks(job_file):
        args = csi_cli.build_parser().parse_args(task["config"][0]["args"])
        if args.mode == "controller":
            continue
        assert args.path_roots == [plugin["stage_publish_base_dir"]]


def test_kubernetes_node_mounts_kubelets_directory_at_the_default_root() -> None:
    objects = render(KUBERNETES_DIR / "base")
    node = next(o for o in objects if o["kind"] == "DaemonSet")
    driver = driver_container(node)
    assert not any(arg.startswith("--path-root") for arg in driver["args"])
    mounts = {m["name"]: m["mountPath"] for m in driver["volumeMounts"]}
    assert mounts["kubelet-dir"] == DEFAULT_PATH_ROOTS[0]
