"""The backup VolumeSnapshotClass examples are what the driver accepts, and their secret exists."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.backups.snapshot_class import missing_for_new_remote, parse_snapshot_class
from plugin.errors import InvalidArgument
from tests.unit.test_deploy_kustomize import KUBERNETES_DIR, render

SECRET_NAME = "csi.storage.k8s.io/snapshotter-secret-name"
SECRET_NAMESPACE = "csi.storage.k8s.io/snapshotter-secret-namespace"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(KUBERNETES_DIR / "examples" / "backups")


def classes(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "VolumeSnapshotClass"}


def secret_of(objects: list[dict[str, Any]], params: dict[str, str]) -> dict[str, str]:
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Secret" and (meta["name"], meta.get("namespace")) == (
            params[SECRET_NAME],
            params[SECRET_NAMESPACE],
        ):
            return dict(obj.get("stringData") or {})
    raise AssertionError(f"no Secret {params[SECRET_NAMESPACE]}/{params[SECRET_NAME]} in the examples")


def test_one_class_per_remote_type_and_each_can_make_its_remote(objects: list[dict[str, Any]]) -> None:
    found = classes(objects)
    types = {}
    for name, vsc in found.items():
        params = {k: str(v) for k, v in vsc["parameters"].items()}
        secrets = secret_of(objects, params) if SECRET_NAME in params else {}
        parsed = parse_snapshot_class(params, secrets)
        assert parsed.remote and missing_for_new_remote(parsed) == [], name
        types[parsed.type] = name
    assert set(types) == {"S3", "Linstor"}


def test_the_s3_class_without_its_secret_is_refused_by_name(objects: list[dict[str, Any]]) -> None:
    s3 = next(
        v for v in classes(objects).values() if v["parameters"]["snap.linstor.csi.linbit.com/type"] == "S3"
    )
    parsed = parse_snapshot_class({k: str(v) for k, v in s3["parameters"].items()}, {})
    assert "secret access-key" in missing_for_new_remote(parsed)
    with pytest.raises(InvalidArgument, match="secret-key"):
        parse_snapshot_class(dict(s3["parameters"]), {"access-key": "only-one"})
