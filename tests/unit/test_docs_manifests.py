"""The Kubernetes objects docs/kubernetes.md shows are valid, as the deployed manifests are.

A reader copies them: every ``yaml`` block and every ``kubectl apply -f - <<'EOF'`` body is
checked against the Kubernetes API schema (built-in kinds) or the CRD's schema (snapshot and
group snapshot kinds), and the classes the page shows are the ones the examples install.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.unit import crd_schemas
from tests.unit.test_deploy_kubernetes import K8S_VERSION

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGE = REPO_ROOT / "docs" / "kubernetes.md"
EXAMPLES = REPO_ROOT / "deploy" / "kubernetes" / "examples"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_APPLY = re.compile(r"kubectl apply -f - <<'EOF'\n(.*?)^EOF$", re.MULTILINE | re.DOTALL)


def manifests(text: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for language, body in _FENCE.findall(text):
        bodies = [body] if language == "yaml" else _APPLY.findall(body) if language == "sh" else []
        for chunk in bodies:
            found.extend(obj for obj in yaml.safe_load_all(chunk) if obj)
    return found


def validate(obj: dict[str, Any]) -> None:
    if obj["kind"] in crd_schemas.BY_KIND:
        jsonschema.validate(obj, crd_schemas.BY_KIND[obj["kind"]])
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_page_shows_manifests() -> None:
    kinds = {obj["kind"] for obj in manifests(PAGE.read_text())}
    assert {
        "PersistentVolumeClaim",
        "VolumeSnapshot",
        "VolumeGroupSnapshotClass",
        "VolumeGroupSnapshot",
    } <= kinds


@pytest.mark.parametrize(
    "obj", manifests(PAGE.read_text()), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}"
)
def test_every_manifest_on_the_page_is_valid(obj: dict[str, Any]) -> None:
    validate(obj)


def test_validation_catches_a_broken_group_snapshot() -> None:
    """Guard against schemas that accept anything."""
    (group,) = [o for o in manifests(PAGE.read_text()) if o["kind"] == "VolumeGroupSnapshot"]
    broken = {**group, "spec": {"source": {"persistentVolumeClaimName": "data"}}}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    (klass,) = [o for o in manifests(PAGE.read_text()) if o["kind"] == "VolumeGroupSnapshotClass"]
    with pytest.raises(jsonschema.ValidationError):
        validate({**klass, "deletionPolicy": "Keep"})


def test_classes_on_the_page_are_the_examples() -> None:
    shown = {o["metadata"]["name"]: o for o in manifests(PAGE.read_text()) if o["kind"].endswith("Class")}
    installed = {}
    for path in EXAMPLES.glob("*.yaml"):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("kind", "").endswith("SnapshotClass"):
                installed[obj["metadata"]["name"]] = obj
    assert shown["linstor-group-snapshots"] == installed["linstor-group-snapshots"]
    references = {
        o["spec"].get("volumeGroupSnapshotClassName") or o["spec"].get("volumeSnapshotClassName")
        for o in manifests(PAGE.read_text())
        if o["kind"] in ("VolumeSnapshot", "VolumeGroupSnapshot")
    }
    assert references <= set(installed), "the page uses only classes the examples install"
