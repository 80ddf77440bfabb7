"""The controller release the emulator plays and the request fields it lacks."""

from __future__ import annotations

import pytest

from emulator import body, versions


def test_rest_api_versions_follow_the_release() -> None:
    assert versions.rest_api_version((1, 34, 0)) == (1, 28, 0)
    assert versions.rest_api_version((1, 30, 2)) == (1, 24, 0)
    assert versions.parse("1.33.0-rc.1") == (1, 33, 0)
    assert versions.parse("one.two") is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("1.34.0", True),
        ("1.34.7", True),
        ("1.20.0", True),
        ("1.19.9", False),
        ("1.35.0", False),
        ("x", False),
    ],
)
def test_only_modelled_versions_are_played(value: str, ok: bool) -> None:
    assert (versions.version_problem(value) is None) == ok


def test_older_controllers_lose_the_fields_they_lack() -> None:
    newest = versions.ControllerVersion()
    assert newest.clone_spec() is body.CLONE and newest.spawn_spec() is body.RG_SPAWN
    old = versions.ControllerVersion((1, 29, 1))  # REST API 1.23
    assert "override_props" not in old.clone_spec().fields
    assert "snapshot_definition_props" not in old.snapshot_spec().fields
    assert "resource_definition_props" in old.spawn_spec().fields  # REST API 1.22+
    assert old.clone_fields_unknown({"name": "c", "delete_props": ["Aux/x"]})
    assert not old.clone_fields_unknown({"name": "c"})
    older = versions.ControllerVersion((1, 27, 0))  # REST API 1.21
    assert "resource_definition_props" not in older.spawn_spec().fields
    with pytest.raises(body.ParseError):
        body.check({"snapshots": [{"name": "s", "snapshot_definition_props": {}}]}, old.snapshot_multi_spec())
