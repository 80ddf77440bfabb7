"""Long operations: listed while they run, a log line at every interval, nothing once done."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from plugin import progress
from plugin.observability import JsonFormatter
from plugin.progress import long_operation, under_way


class Lines(logging.Handler):
    """Collects the progress logger's lines; ``wait_for`` blocks until enough arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.entries: list[dict] = []
        self.arrived = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.arrived:
            self.entries.append(json.loads(self.format(record)))
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.entries) >= count, timeout), self.entries
            return list(self.entries)

    def wait_until(self, done: Callable[[list[dict]], bool], timeout: float = 30.0) -> None:
        with self.arrived:
            assert self.arrived.wait_for(lambda: done(self.entries), timeout), self.entries


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("plugin.progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)


def test_an_operation_is_listed_while_it_runs_and_reports_at_intervals(lines: Lines) -> None:
    with long_operation("pvc-clone", "cloning from volume pvc-src", interval=0.05) as op:
        (listed,) = under_way("PVC-CLONE")  # LINSTOR names compare without case
        assert listed is op
        op.detail = "LINSTOR clone status: CLONING"
        entries = lines.wait_for(2)
    assert under_way("pvc-clone") == []
    still = [e for e in entries if e["msg"] == "still working"]
    assert len(still) >= 2
    assert still[-1]["volume"] == "pvc-clone"
    assert still[-1]["operation"] == "cloning from volume pvc-src"
    assert still[-1]["detail"] == "LINSTOR clone status: CLONING"
    assert still[-1]["elapsed_s"] >= still[0]["elapsed_s"]
    done = lines.wait_for(len(entries) + 1)[-1]
    assert done["msg"] == "long operation done" and done["volume"] == "pvc-clone"


def test_a_quick_operation_logs_nothing(lines: Lines) -> None:
    with long_operation("quick", "attaching", interval=30):
        pass
    assert lines.entries == []
    assert under_way("quick") == []


def test_a_failed_operation_says_so_and_is_no_longer_listed(lines: Lines) -> None:
    with pytest.raises(RuntimeError), long_operation("bad", "formatting /dev/x", interval=0.05):
        lines.wait_for(1)
        raise RuntimeError("mkfs failed")
    assert lines.entries[-1]["msg"] == "long operation failed"
    assert under_way("bad") == []


def test_describe_says_what_for_how_long_and_the_detail() -> None:
    op = progress.Operation(subject="v", what="cloning from volume a", detail="LINSTOR clone status: CLONING")
    assert op.describe().startswith("cloning from volume a for ")
    assert op.describe().endswith(" s (LINSTOR clone status: CLONING)")


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="greater than zero"):
        progress.set_interval(0)


# ----------------------------------------------------------------------------- one reporter thread


def test_a_short_interval_is_served_while_the_reporter_waits_for_a_long_one(lines: Lines) -> None:
    with long_operation("warm", "attaching", interval=0.02):
        lines.wait_for(1)  # the reporter thread is running
    seen = len(lines.wait_for(2))  # "warm"'s end line
    with long_operation("slow-clone", "cloning", interval=3600):
        time.sleep(0.2)  # not a measurement: lets the reporter settle into its hour-long wait
        with long_operation("quick", "attaching", interval=0.05):
            entries = lines.wait_for(seen + 2)[seen:]
    assert {e["volume"] for e in entries if e["msg"] == "still working"} == {"quick"}
    ends = [
        e for e in lines.wait_for(seen + len(entries) + 1)[seen:] if e["msg"].startswith("long operation")
    ]
    assert [e["volume"] for e in ends] == ["quick"]  # the slow one said nothing, so no end either


def test_concurrent_operations_each_report_and_end_after_their_last_line(lines: Lines) -> None:
    started = threading.Barrier(8)

    def work(n: int) -> None:
        with long_operation(f"vol-{n}", f"job {n}", interval=0.02):
            started.wait()
            # each operation lasts until it has had at least two lines of its own
            lines.wait_until(lambda es: sum(1 for e in es if e.get("volume") == f"vol-{n}") >= 2)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(8):
        mine = [e["msg"] for e in lines.entries if e["volume"] == f"vol-{n}"]
        assert mine[-1] == "long operation done", mine
        assert set(mine[:-1]) == {"still working"} and len(mine) >= 3
    assert under_way("vol-0") == []


def test_a_forked_child_reports_its_own_operations(lines: Lines) -> None:
    with long_operation("parent", "cloning", interval=0.02):
        lines.wait_for(1)  # the parent's reporter thread is running
    pid = os.fork()
    if pid == 0:  # the child: no reporter thread was inherited; one must start for it
        code = 1
        try:
            seen = len(lines.entries)
            with long_operation("child", "formatting", interval=0.02):
                lines.wait_for(seen + 1, timeout=10)
            code = 0 if lines.entries[seen]["volume"] == "child" else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_reporter_that_died_is_replaced_by_the_next_operation(
    lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = progress.log_fields
    failures: list[str] = []

    def fail_once(*args: object, **fields: object) -> None:
        if not failures:
            failures.append("raised")
            raise RuntimeError("a broken log handler")
        real(*args, **fields)  # type: ignore[arg-type]

    monkeypatch.setattr(progress, "log_fields", fail_once)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the death is the point here
    with long_operation("first", "cloning", interval=0.02):
        progress._reporter[0].join(timeout=30)  # the reporter died on its first line
    assert failures == ["raised"] and not progress._reporter[0].is_alive()
    with long_operation("second", "cloning", interval=0.02):
        entries = lines.wait_for(1)
    assert [(e["volume"], e["msg"]) for e in entries][:1] == [("second", "still working")]
