"""A call started in a thread of its own: its answer, its error and the caller's context."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

import pytest

from plugin import in_thread
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


def _wait_until(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return check()


def test_a_call_after_another_has_ended_reuses_its_thread() -> None:
    first = InThread(threading.get_ident, "reader")
    ident = first.result()
    assert _wait_until(lambda: in_thread._WORKERS.idle_count() > 0)
    assert InThread(threading.get_ident, "reader").result() == ident


def test_calls_at_the_same_time_never_queue_behind_each_other() -> None:
    both = threading.Barrier(2, timeout=5)
    first = InThread(both.wait, "reader")
    second = InThread(both.wait, "reader")  # would time out if it waited for the first thread
    assert {first.result(), second.result()} == {0, 1}


def test_a_kept_thread_ends_after_its_idle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(in_thread, "IDLE_SECONDS", 0.05)
    monkeypatch.setattr(in_thread, "_WORKERS", in_thread._Workers())
    call = InThread(threading.current_thread, "reader")
    thread = call.result()
    assert _wait_until(lambda: not thread.is_alive())
    assert in_thread._WORKERS.idle_count() == 0
    assert InThread(lambda: "still answers", "reader").result() == "still answers"


def test_the_caller_goes_on_only_once_the_call_has_begun(monkeypatch: pytest.MonkeyPatch) -> None:
    """As with a new thread: the call gets to send its request before the caller's own work."""
    go = threading.Event()
    real_run = in_thread._WORKERS.run

    def late_run(job: Callable[[], None], name: str) -> None:
        threading.Thread(target=lambda: (go.wait(5), real_run(job, name)), daemon=True).start()

    monkeypatch.setattr(in_thread._WORKERS, "run", late_run)
    calls: list[InThread[str]] = []
    caller = threading.Thread(target=lambda: calls.append(InThread(lambda: "answer", "reader")))
    caller.start()
    caller.join(0.2)
    assert caller.is_alive() and not calls  # the call has not begun: the caller waits
    go.set()
    caller.join(5)
    assert calls[0].result() == "answer"
