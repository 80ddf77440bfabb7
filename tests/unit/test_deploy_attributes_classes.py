"""The VolumeAttributesClass examples (manifest and docs) are valid and the driver takes them.

Each VolumeAttributesClass of ``deploy/kubernetes/examples`` and each YAML block of
docs/kubernetes.md is checked against the Kubernetes API schema in strict mode, names this
driver, and carries only mutable parameters the driver accepts; a PVC in the docs names a
StorageClass and a VolumeAttributesClass that the examples define.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from plugin.errors import InvalidArgument
from plugin.volumes.modify import parse_mutable_parameters
from tests.unit.test_deploy_docs import page
from tests.unit.test_deploy_kubernetes import DRIVER_NAME, find
from tests.unit.test_deploy_kustomize import KUBERNETES_DIR, render
from tests.unit.test_docs_manifests import validate

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def examples() -> list[Obj]:
    return render(KUBERNETES_DIR / "examples")


def doc_objects() -> list[Obj]:
    blocks = re.findall(r"```yaml\n(.*?)```", page("kubernetes.md"), flags=re.DOTALL)
    return [obj for block in blocks for obj in yaml.safe_load_all(block) if isinstance(obj, dict)]


def test_example_classes_name_the_driver_and_parse(examples: list[Obj]) -> None:
    classes = find(examples, "VolumeAttributesClass")
    assert len(classes) >= 2
    for vac in classes:
        assert vac["driverName"] == DRIVER_NAME
        changes = parse_mutable_parameters(vac["parameters"])
        assert changes.place_count is not None  # each example sets the replica count


def test_the_docs_show_valid_objects_of_the_examples(examples: list[Obj]) -> None:
    objects = doc_objects()
    kinds = {o["kind"] for o in objects}
    assert {"VolumeAttributesClass", "PersistentVolumeClaim"} <= kinds
    classes = {v["metadata"]["name"]: v for v in find(examples, "VolumeAttributesClass")}
    storage_classes = {s["metadata"]["name"] for s in find(examples, "StorageClass")}
    for obj in objects:
        validate(obj)  # the API schema, or the CRD's for snapshot and group snapshot classes
        if obj["kind"] == "VolumeAttributesClass":
            assert obj == classes[obj["metadata"]["name"]], "the docs show the example file's class"
            parse_mutable_parameters(obj["parameters"])
        if obj["kind"] == "PersistentVolumeClaim" and "volumeAttributesClassName" in obj["spec"]:
            assert obj["spec"]["storageClassName"] in storage_classes
            assert obj["spec"]["volumeAttributesClassName"] in classes


def test_a_class_with_an_immutable_key_would_be_refused() -> None:
    """Guard: the check above can fail."""
    with pytest.raises(InvalidArgument, match="storagePool"):
        parse_mutable_parameters({"linstor.csi.linbit.com/storagePool": "pool-a"})
