"""A small kustomize renderer for the subset deploy/kubernetes uses, and its own tests.

No kustomize binary can be installed from the registries the project uses, so the
deployment tests render the kustomizations here. The subset is deliberately small
(resources, namespace, images, JSON 6902 patches with a kind/name target) and anything
outside it is an error rather than silently ignored, so a manifest change that needs
more of kustomize fails loudly instead of being validated wrongly. When a ``kubectl``
with built-in kustomize is on the PATH, the output is also compared with it.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_DIR = REPO_ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = (
    "base",
    "overlays/tls",
    "overlays/monitoring",
    "overlays/piraeus",
    "examples",
    "examples/backups",
)

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
# Kinds without a namespace among those the manifests use (plus common neighbours).
CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CSIDriver",
    "CSINode",
    "StorageClass",
    "VolumeSnapshotClass",
    "VolumeGroupSnapshotClass",
    "PersistentVolume",
    "PriorityClass",
    "CustomResourceDefinition",
    "VolumeAttributesClass",
    "LinstorCluster",
}

Obj = dict[str, Any]


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not implement, or is broken."""


def render(directory: Path) -> list[Obj]:
    """Build the kustomization in ``directory`` into a list of objects."""
    kfile = directory / "kustomization.yaml"
    if not kfile.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: fields not supported by this renderer: {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            objects.extend(render(path))
        elif path.is_file():
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
        else:
            raise KustomizeError(f"{kfile}: resource {entry} does not exist")
    _check_unique(objects, kfile)
    if "namespace" in spec:
        _set_namespace(objects, spec["namespace"])
    for image in spec.get("images", []):
        _set_image(objects, image)
    for patch in spec.get("patches", []):
        _apply_patch(objects, patch, directory)
    return objects


def _check_unique(objects: list[Obj], origin: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = identity(obj)
        if key in seen:
            raise KustomizeError(f"{origin}: {key} is defined twice")
        seen.add(key)


def identity(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def _set_namespace(objects: list[Obj], namespace: str) -> None:
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    for obj in objects:
        if obj["kind"] not in CLUSTER_SCOPED_KINDS:
            obj["metadata"]["namespace"] = namespace
        if obj["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            for subject in obj.get("subjects", []):
                if subject.get("kind") == "ServiceAccount" and subject.get("name") in accounts:
                    subject["namespace"] = namespace


def pod_spec(obj: Obj) -> Obj | None:
    """The pod template spec of a workload, or None for other kinds."""
    if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job", "ReplicaSet"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return None


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``name[:tag][@digest]`` into its parts (a port in the registry host is not a tag)."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    tag = None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image, tag = image.rsplit(":", 1)
    return image, tag, digest


def _set_image(objects: list[Obj], rule: Obj) -> None:
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, tag, digest = split_image(container["image"])
            if name != rule["name"]:
                continue
            name = rule.get("newName", name)
            if "digest" in rule:
                container["image"] = f"{name}@{rule['digest']}"
                continue
            tag = str(rule["newTag"]) if "newTag" in rule else tag
            container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _apply_patch(objects: list[Obj], patch: Obj, directory: Path) -> None:
    if "path" in patch:
        ops = yaml.safe_load((directory / patch["path"]).read_text())
    elif "patch" in patch:
        ops = yaml.safe_load(patch["patch"])
    else:
        raise KustomizeError(f"patch without path or patch: {patch}")
    if not isinstance(ops, list):
        raise KustomizeError("only JSON 6902 patches (a list of operations) are supported")
    target = patch.get("target") or {}
    unknown = set(target) - {"kind", "name", "group", "version"}
    if unknown or not {"kind", "name"} <= set(target):
        raise KustomizeError(f"patch target must name kind and name only: {target}")
    matches = [o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
    if not matches:
        raise KustomizeError(f"patch target {target} matches no object")
    for obj in matches:
        for op in ops:
            json_patch(obj, op)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Obj, op: Obj) -> None:
    """Apply one RFC 6902 add/replace/remove operation in place."""
    parts = _pointer(op["path"])
    parent: Any = doc
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise KustomizeError(f"path {op['path']} does not exist") from exc
    last = parts[-1]
    kind = op["op"]
    value = copy.deepcopy(op.get("value"))
    if isinstance(parent, list):
        if kind == "add":
            if last == "-":
                parent.append(value)
            else:
                parent.insert(int(last), value)
            return
        index = int(last)
        if not 0 <= index < len(parent):
            raise KustomizeError(f"path {op['path']} does not exist")
        if kind == "replace":
            parent[index] = value
        elif kind == "remove":
            del parent[index]
        else:
            raise KustomizeError(f"unsupported JSON patch op {kind}")
        return
    if kind == "add":
        parent[last] = value
    elif kind in ("replace", "remove"):
        if last not in parent:
            raise KustomizeError(f"path {op['path']} does not exist")
        if kind == "replace":
            parent[last] = value
        else:
            del parent[last]
    else:
        raise KustomizeError(f"unsupported JSON patch op {kind}")


# ---- tests of the renderer itself ----------------------------------------------------------


def test_json_patch_add_replace_remove() -> None:
    doc: Obj = {"a": {"list": [1, 2]}, "b": "x"}
    json_patch(doc, {"op": "add", "path": "/a/list/-", "value": 3})
    json_patch(doc, {"op": "add", "path": "/a/list/0", "value": 0})
    json_patch(doc, {"op": "replace", "path": "/b", "value": "y"})
    json_patch(doc, {"op": "remove", "path": "/a/list/1"})
    json_patch(doc, {"op": "add", "path": "/c~1d", "value": True})
    assert doc == {"a": {"list": [0, 2, 3]}, "b": "y", "c/d": True}


def test_json_patch_rejects_missing_paths() -> None:
    with pytest.raises(KustomizeError):
        json_patch({"a": {}}, {"op": "replace", "path": "/a/missing", "value": 1})
    with pytest.raises(KustomizeError):
        json_patch({"a": [1]}, {"op": "remove", "path": "/a/4"})
    with pytest.raises(KustomizeError):
        json_patch({"a": {}}, {"op": "add", "path": "/x/y", "value": 1})


def test_split_image_handles_registry_ports_and_digests() -> None:
    assert split_image("registry.k8s.io/sig-storage/livenessprobe:v2.19.0") == (
        "registry.k8s.io/sig-storage/livenessprobe",
        "v2.19.0",
        None,
    )
    assert split_image("localhost:5000/plugin") == ("localhost:5000/plugin", None, None)
    assert split_image("img@sha256:abc") == ("img", None, "sha256:abc")


def test_renderer_rejects_unsupported_fields(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("configMapGenerator: []\n")
    with pytest.raises(KustomizeError, match="configMapGenerator"):
        render(tmp_path)


def test_renderer_applies_namespace_images_and_patches(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text(
        "namespace: ns1\nresources: [objs.yaml]\nimages: [{name: app, newName: reg/app, newTag: '2'}]\n"
    )
    (tmp_path / "base" / "objs.yaml").write_text(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\n"
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: b}\n"
        "subjects: [{kind: ServiceAccount, name: sa, namespace: other}]\n"
        "roleRef: {kind: ClusterRole, name: r, apiGroup: rbac.authorization.k8s.io}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
        "spec: {template: {spec: {containers: [{name: c, image: 'app:1', env: []}]}}}\n"
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [base]\npatches:\n- target: {kind: Deployment, name: d}\n"
        "  patch: '[{op: add, path: /spec/template/spec/containers/0/env/-, value: {name: X, value: y}}]'\n"
    )
    objects = {o["kind"]: o for o in render(tmp_path)}
    assert objects["ServiceAccount"]["metadata"]["namespace"] == "ns1"
    assert "namespace" not in objects["ClusterRoleBinding"]["metadata"]
    assert objects["ClusterRoleBinding"]["subjects"][0]["namespace"] == "ns1"
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg/app:2"
    assert container["env"] == [{"name": "X", "value": "y"}]


def _kubectl_kustomize(directory: Path) -> list[Obj] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_renderer_agrees_with_kubectl_kustomize(name: str) -> None:
    """Cross-check against the real kustomize where one exists (it is not installable here)."""
    reference = _kubectl_kustomize(KUBERNETES_DIR / name)
    if reference is None:
        pytest.skip("no kubectl with built-in kustomize on PATH to compare against")
    ours = {identity(o): o for o in render(KUBERNETES_DIR / name)}
    theirs = {identity(o): o for o in reference}
    assert ours.keys() == theirs.keys()
    for key, obj in ours.items():
        assert obj == theirs[key], f"{key} differs from kubectl kustomize"
