"""The controller's version is read once; features it lacks are refused by name and version."""

from __future__ import annotations

from typing import Any

import pytest

from plugin.errors import FailedPrecondition
from plugin.linstor import features as features
from plugin.linstor.records import VersionInfo


def _features(answer: dict[str, Any]) -> tuple[features.ControllerFeatures, list[int]]:
    calls: list[int] = []

    def fetch() -> VersionInfo:
        calls.append(1)
        return VersionInfo.from_wire(answer)

    return features.ControllerFeatures(fetch), calls


def test_the_version_is_read_once() -> None:
    feats, calls = _features({"version": "1.34.0", "rest_api_version": "1.28.0"})
    for feature in (features.SPAWN_PROPS, features.SNAPSHOT_PROPS, features.CLONE_PROPS):
        feats.require(feature)
        feats.require(feature)
    assert len(calls) == 1


def test_a_missing_feature_is_refused_with_the_minimum_version() -> None:
    feats, _ = _features({"version": "1.29.1", "rest_api_version": "1.23.0"})
    feats.require(features.SPAWN_PROPS)  # REST 1.22+: present
    with pytest.raises(FailedPrecondition) as exc:
        feats.require(features.SNAPSHOT_PROPS)
    assert "REST API 1.24.0 or newer" in exc.value.message and "REST API 1.23.0" in exc.value.message
    with pytest.raises(FailedPrecondition) as exc:
        feats.require(features.CLONE_PROPS)
    assert "cloning volumes needs LINSTOR 1.32.0 or newer" in exc.value.message
    assert "runs LINSTOR 1.29.1" in exc.value.message


def test_an_unparseable_version_leaves_the_decision_to_the_controller() -> None:
    feats, _ = _features({"version": "git-abc"})
    feats.require(features.CLONE_PROPS)
    feats.require(features.SNAPSHOT_PROPS)


def test_a_failed_read_is_not_remembered() -> None:
    answers: list[Any] = [OSError("down"), {"version": "1.34.0", "rest_api_version": "1.28.0"}]

    def fetch() -> VersionInfo:
        value = answers.pop(0)
        if isinstance(value, Exception):
            raise value
        return VersionInfo.from_wire(value)

    feats = features.ControllerFeatures(fetch)
    with pytest.raises(OSError):
        feats.require(features.CLONE_PROPS)
    feats.require(features.CLONE_PROPS)
    assert answers == []
