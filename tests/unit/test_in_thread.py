"""A call started in a thread of its own: its answer, its error and the caller's context."""

from __future__ import annotations

import contextvars
import threading

import pytest

from plugin.in_thread import InThread

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


def test_the_answer_comes_from_another_thread_with_the_callers_context() -> None:
    marker.set("caller")
    call = InThread(lambda: (marker.get(), threading.current_thread().name), "reader")
    assert call.result() == ("caller", "reader")


def test_the_error_is_raised_where_the_result_is_asked_for() -> None:
    def fail() -> None:
        raise LookupError("not there")

    call = InThread(fail, "reader")
    with pytest.raises(LookupError, match="not there"):
        call.result()


def test_done_tells_whether_the_result_would_make_the_caller_wait() -> None:
    release = threading.Event()
    call = InThread(lambda: release.wait(5), "reader")
    assert call.done() is False
    release.set()
    assert call.result() is True
    assert call.done() is True
