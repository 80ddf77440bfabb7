"""Back-off over 974/979 within the caller's deadline, without a real clock."""

from __future__ import annotations

import pytest

from plugin.errors import FailedPrecondition, OperationFailed
from plugin.linstor import retcodes as rc
from plugin.volumes import sync_wait


def _refused(code: int) -> OperationFailed:
    return OperationFailed("not all up to date", code=code)


def test_a_sync_refusal_is_retried_with_growing_pauses() -> None:
    answers: list[object] = [
        _refused(rc.FAIL_NOT_ALL_UPTODATE),
        _refused(rc.FAIL_SNAPSHOT_NOT_UPTODATE),
        "done",
    ]
    pauses: list[float] = []

    def action() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with sync_wait.caller_deadline(30):
        assert sync_wait.retry_while_syncing(action, "grow v", list, sleep=pauses.append) == "done"
    assert pauses == [sync_wait.FIRST_PAUSE, sync_wait.FIRST_PAUSE * 2]


def test_other_errors_are_not_retried() -> None:
    calls = []

    def action() -> None:
        calls.append(1)
        raise _refused(rc.FAIL_IN_USE)

    with pytest.raises(OperationFailed):
        sync_wait.retry_while_syncing(action, "grow v", list, sleep=lambda _: None)
    assert calls == [1]


def test_no_time_left_refuses_with_the_replicas_and_their_states() -> None:
    def action() -> None:
        raise _refused(rc.FAIL_NOT_ALL_UPTODATE)

    with sync_wait.caller_deadline(0.5), pytest.raises(FailedPrecondition) as caught:
        sync_wait.retry_while_syncing(
            action, "grow volume v1", lambda: [("node-b", "Inconsistent")], sleep=lambda _: None
        )
    assert str(caught.value).startswith("cannot grow volume v1 yet: the replica on node-b is Inconsistent")
    assert caught.value.details["replicas"] == {"node-b": "Inconsistent"}
