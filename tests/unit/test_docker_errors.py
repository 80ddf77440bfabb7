"""Every failure becomes one readable Err sentence; nothing internal leaks."""

from __future__ import annotations

import pytest

from docker_plugin.errors import INTERNAL_ERROR, docker_error_message
from plugin import errors


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (errors.InvalidArgument("unknown option 'sise'"), "unknown option 'sise'"),
        (errors.NotFound("volume v1 does not exist."), "volume v1 does not exist"),
        (errors.AlreadyExists("volume v1 exists with size 1 GiB"), "remove it first or use another name"),
        (errors.NoSpace("not enough nodes for 3 replicas"), "ask for fewer replicas"),
        (errors.InUse("volume v1 is in use on node-b"), "volume v1 is in use on node-b: stop the containers"),
        (errors.NodeOffline("node-b is offline"), "bring the node back online"),
        (errors.Unavailable("no LINSTOR controller answered"), "LS_CONTROLLERS"),
        (errors.Busy("volume v1 is being resized"), "retry in a moment"),
        (errors.FailedPrecondition("volume v1 is raw block"), "volume v1 is raw block"),
        (errors.OperationFailed("mkfs failed: bad option"), "mkfs failed: bad option: see the"),
    ],
)
def test_core_errors_keep_their_message_and_gain_a_hint(exc: errors.VolumeError, expected: str) -> None:
    message = docker_error_message(exc)
    assert expected in message
    assert exc.message.rstrip(".") in message
    assert "Traceback" not in message and "Error(" not in message


def test_unexpected_exceptions_never_leak_details() -> None:
    message = docker_error_message(KeyError("secret-internal-key"))
    assert message == INTERNAL_ERROR
    assert "secret-internal-key" not in message and "KeyError" not in message


def test_hint_is_not_repeated_when_the_core_already_gave_it() -> None:
    exc = errors.Busy("volume v1 is busy: another operation on this volume is under way; retry in a moment")
    assert docker_error_message(exc).count("retry in a moment") == 1


def test_message_with_its_own_advice_gets_no_second_hint() -> None:
    exc = errors.InUse("volume v1 is in use on node-b; unmount it there first", nodes=["node-b"])
    assert docker_error_message(exc) == "volume v1 is in use on node-b; unmount it there first"


def test_empty_core_message_still_says_something() -> None:
    assert docker_error_message(errors.NotFound("")) == "the volume operation failed"
    assert docker_error_message(errors.NoSpace("")).startswith("the volume operation failed: add storage")


def test_the_core_s_generic_advice_gives_way_to_the_docker_hint() -> None:
    """One piece of advice, the one that names the Docker plugin's config file."""
    exc = errors.Unavailable(
        "no LINSTOR controller reachable (http://127.0.0.1:3370: [Errno 111] Connection refused). "
        "Check LS_CONTROLLERS and that the controller is running."
    )
    message = docker_error_message(exc)
    assert message.startswith(
        "no LINSTOR controller reachable (http://127.0.0.1:3370: [Errno 111] Connection refused): "
    )
    assert message.lower().count("check") == 1 and message.count("LS_CONTROLLERS") == 1
    assert message.endswith("controllers= in /etc/linstor/docker-volume.conf), then retry")


def test_the_docker_hint_replaces_the_core_advice_after_several_controllers() -> None:
    exc = errors.Unavailable(
        "no LINSTOR controller reachable (http://a:3370: refused; http://b:3370: timed out). "
        "Check LS_CONTROLLERS and that the controller is running."
    )
    message = docker_error_message(exc)
    assert message.startswith(
        "no LINSTOR controller reachable (http://a:3370: refused; http://b:3370: timed out): "
    )
    assert message.lower().count("check") == 1 and "docker-volume.conf" in message
