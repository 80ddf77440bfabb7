"""The properties every fuzzed request must keep, checked after each one.

- the daemon is still running (no crash) and answered within the deadline (no hang);
- the answer is a protocol answer: a CSI status code from the spec's set with a message, or
  Docker JSON whose ``Err`` is a sentence; no traceback text either way;
- no host command strayed: nothing the audit wrappers refused, and every device or mount a
  node command acted on is the request's own volume's;
- the scratch devices and files are byte-identical, and the daemon's mounts outside its
  root are the ones it started with.

Each property fails on its own line, so Hypothesis reports distinct failures separately.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from tests.conftest import EmulatorProcess
from tests.fuzz.audit import foreign_targets, refusals
from tests.fuzz.scratch import Scratch, changes
from tests.fuzz.stack import NamespacedDaemon, mounts_of

# Codes the CSI spec (and gRPC for transport limits) gives a plugin; UNKNOWN means an
# exception escaped a handler, DEADLINE_EXCEEDED a hang.
CSI_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.INTERNAL,
    }
)
TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "/', "Exception calling application")


def csi_outcome(call: Callable[[], object]) -> str:
    """Make one call; return "OK" or the status code's name, failing on a non-protocol answer."""
    try:
        call()
    except grpc.RpcError as exc:
        code, details = exc.code(), exc.details() or ""
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"hang: no answer within the deadline ({details})"
        assert code in CSI_CODES, f"not a CSI status: {code.name}: {details}"
        assert details.strip(), f"{code.name} without a message"
        assert not any(m in details for m in TRACEBACK_MARKS), f"traceback in the answer: {details[:2000]}"
        return str(code.name)
    return "OK"


def docker_outcome(status: int, payload: bytes) -> str:
    """Check one Docker plugin answer; return "OK" or the error sentence."""
    try:
        answer = json.loads(payload)
    except ValueError:
        raise AssertionError(f"HTTP {status} with a body that is not JSON: {payload[:300]!r}") from None
    assert isinstance(answer, dict), f"HTTP {status} with JSON that is not an object: {payload[:300]!r}"
    err = answer.get("Err", "")
    assert isinstance(err, str), f"Err is not a string: {err!r}"
    assert status == 200 or err.strip(), f"HTTP {status} without an Err sentence: {payload[:300]!r}"
    assert not any(m in err for m in TRACEBACK_MARKS), f"traceback in Err: {err[:2000]}"
    if err:
        assert len(err.strip()) >= 10 and " " in err.strip(), f"Err is not a sentence: {err!r}"
    return err if err else "OK"


@dataclass(repr=False)
class Watch:
    """What must not change around a request: scratch data, foreign mounts, the audit logs."""

    daemon: NamespacedDaemon
    emulator: EmulatorProcess
    scratch: Scratch
    root: str  # the daemon's own root, where its mounts may come and go
    required_mounts: list[str] = field(default_factory=list)  # e.g. another volume's staging mount
    baseline: dict[str, str] = field(default_factory=dict)
    foreign: set[tuple[str, str, str]] = field(default_factory=set)

    def __repr__(self) -> str:
        return f"Watch(root={self.root!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))

    def outside_root(self) -> set[tuple[str, str, str]]:
        """Mounts outside the daemon's root, leaving out other tests' temporary mounts.

        The namespace is a private copy taken at start, so a mount can only appear in it by the
        daemon's hand; but one of another test's mounts under /tmp may still go away (the
        kernel drops it with its device), which says nothing about the request.
        """
        prefix = self.root.rstrip("/") + "/"
        own = str(self.scratch.base.parent) + "/"
        return {
            m
            for m in mounts_of(self.daemon.pid)
            if not (m[0] + "/").startswith(prefix) and (not m[0].startswith("/tmp/") or m[0].startswith(own))
        }

    def start(self) -> None:
        """Record the state every later request is compared with."""
        self.baseline = self.scratch.fingerprint()
        self.foreign = self.outside_root()
        self.before()

    def before(self) -> None:
        self.daemon.tools.log.mark()
        self.emulator.audit.log.mark()  # type: ignore[attr-defined]

    def after(self, own_rdevs: set[str]) -> None:
        assert self.daemon.alive(), (
            f"crash: the daemon exited ({self.daemon.exit_code()}):\n{self.daemon.log_tail()}"
        )
        assert self.emulator.proc is not None and self.emulator.proc.poll() is None, (
            "crash: the emulator exited"
        )
        node_records = self.daemon.tools.log.new_records()
        emulator_records = self.emulator.audit.log.new_records()  # type: ignore[attr-defined]
        refused = refusals(node_records)
        assert not refused, f"unconfined node command (refused by the audit): {refused}"
        foreign = foreign_targets(node_records, own_rdevs)
        assert not foreign, f"node command on another volume's device or mount: {foreign}"
        refused = refusals(emulator_records)
        assert not refused, f"unconfined satellite (emulator) command (refused by the audit): {refused}"
        changed = changes(self.baseline, self.scratch.fingerprint())
        assert not changed, f"scratch data touched: {changed}"
        now = self.outside_root()
        gone, new = sorted(self.foreign - now), sorted(now - self.foreign)
        assert now == self.foreign, f"mounts outside the root changed: gone {gone}, new {new}"
        points = {m[0] for m in mounts_of(self.daemon.pid)}
        missing = [p for p in self.required_mounts if p not in points]
        assert not missing, f"another volume's mounts were removed: {missing}"
