"""Long operations: listed while they run, a log line at every interval, nothing once done."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

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


def test_operations_share_one_reporter_thread() -> None:
    """No thread is started per operation (that cost milliseconds around every mkfs)."""
    with (
        long_operation("a", "attaching", interval=30),
        long_operation("b", "formatting", interval=30),
        long_operation("c", "cloning", interval=30),
    ):
        reporters = [t for t in threading.enumerate() if t.name.startswith("progress")]
        assert len(reporters) == 1 and reporters[0].is_alive()
        assert [op.subject for op in under_way("c")] == ["c"]
    assert under_way("a") == under_way("b") == under_way("c") == []


def test_each_operation_keeps_its_own_interval(lines: Lines) -> None:
    with long_operation("slow", "cloning", interval=30), long_operation("busy", "formatting", interval=0.05):
        entries = lines.wait_for(3)
    assert {e["volume"] for e in entries} == {"busy"}  # the 30 s one is not due yet
    done = lines.wait_for(len(entries) + 1)
    assert [e["volume"] for e in done if e["msg"].startswith("long operation")] == ["busy"]
