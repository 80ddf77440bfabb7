"""Kill a process mid-call, retry to completion, then look for anything left behind.

The crash suite's moving parts, shared by its CSI, Docker and emulator modules:

- :class:`FaultPlan` turns the seed and ``--fault-runs`` into a reproducible list of kills:
  which step, and at what fraction of that step's measured duration the SIGKILL lands.
- :func:`kill_during` starts a call in a thread, waits, kills the process serving it, and
  reports whether the kill landed while the call was still running (mid-call).
- :func:`retry` repeats a step against the restarted process until it succeeds, accepting
  only the answers a crash can explain (unavailable, aborted, busy) on the way.
- :func:`leaks` lists what a finished lifecycle left: resource definitions, resources
  (diskless ones named as such), snapshots, mounts naming the test's directories in any
  mount namespace, loop devices over the emulator's files, files in the private temp dir.
- :class:`FaultLog` collects kills and findings for the summary line the suite prints.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from testkit.waiting import wait_until
from tests.conftest import EmulatorProcess

T = TypeVar("T")

DEFAULT_LATENCY_MS = 150  # per controller request while a killed step runs
TLS_TEMP_GLOB = "/tmp/linstor-plugin-tls-*"


# ------------------------------------------------------------------ plan and log


@dataclass(frozen=True)
class Kill:
    """One planned SIGKILL: in ``step``, at ``fraction`` of the step's measured duration.

    With ``paths`` only the controller requests matching it are slowed, by ``latency_ms``, and
    the kill lands at ``fraction`` of that latency after the step starts: the request is then
    on its way, and the controller applies it after the caller is gone.
    """

    step: str
    fraction: float
    paths: str | None = None
    latency_ms: float = DEFAULT_LATENCY_MS


@dataclass
class FaultPlan:
    """Which kills a scenario makes; the seed fixes them, ``runs`` scales them."""

    seed: int
    runs: int | None  # None: the short fixed set (every step once)

    def kills(self, scope: str, steps: Sequence[str], step: str) -> list[Kill]:
        """The kills for one step of a scenario: one by default, ``runs`` spread over the steps."""
        rng = random.Random(f"{self.seed}:{scope}:{step}")
        count = 1 if self.runs is None else _share(self.runs, len(steps), steps.index(step))
        return [Kill(step, rng.uniform(0.05, 0.95)) for _ in range(count)]

    def targeted(
        self, scope: str, steps: Sequence[str], step: str, paths: str, latency_ms: float
    ) -> list[Kill]:
        """As many kills as :meth:`kills` plans for ``step``, each while a request matching
        ``paths`` is held by the controller (the window between two of the step's requests)."""
        return [
            Kill(step, k.fraction * 0.6 + 0.2, paths, latency_ms)
            for k in self.kills(f"{scope}:targeted", steps, step)
        ]

    def rng(self, scope: str) -> random.Random:
        return random.Random(f"{self.seed}:{scope}")


def _share(total: int, parts: int, index: int) -> int:
    """``total`` split over ``parts`` as evenly as possible; the first ones get the remainder."""
    return total // parts + (1 if index < total % parts else 0)


@dataclass
class FaultLog:
    """Every kill and finding of a session, for the summary line and the docs' figures."""

    seed: int
    kills: Counter[str] = field(default_factory=Counter)
    mid_call: Counter[str] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)
    data_errors: list[str] = field(default_factory=list)
    failed_lives: list[str] = field(default_factory=list)
    scenarios_failed: list[str] = field(default_factory=list)
    scenarios_passed: int = 0

    def killed(self, kind: str, step: str, mid: bool) -> None:
        self.kills[f"{kind} {step}"] += 1
        if mid:
            self.mid_call[f"{kind} {step}"] += 1

    def summary(self) -> str:
        total, mid = sum(self.kills.values()), sum(self.mid_call.values())
        outcome = "failed" if self.scenarios_failed else "passed"
        return (
            f"fault suite: seed {self.seed}, {total} kills ({mid} mid-call), {len(self.leaks)} leaks, "
            f"{len(self.data_errors)} data mismatches, {len(self.failed_lives)} lives not completed, "
            f"{self.scenarios_passed} scenarios passed, "
            f"{len(self.scenarios_failed)} failed: {outcome}"
        )

    def details(self) -> list[str]:
        lines = [
            f"  {key}: {n} kills, {self.mid_call[key]} mid-call" for key, n in sorted(self.kills.items())
        ]
        lines += [f"  leak: {text}" for text in self.leaks]
        lines += [f"  data: {text}" for text in self.data_errors]
        lines += [f"  not completed: {text}" for text in self.failed_lives]
        lines += [f"  failed: {name}" for name in self.scenarios_failed]
        return lines


class StepDurations:
    """How long each step takes uninterrupted on this machine, measured by a calibration run.

    A kill lands at a fraction of this, so most kills land while the step is still running.
    """

    def __init__(self, default: float = 1.0) -> None:
        self.default = default
        self._seen: dict[str, list[float]] = {}

    def timed(self, step: str, call: Callable[[], T]) -> T:
        start = time.monotonic()
        result = call()
        self._seen.setdefault(step, []).append(time.monotonic() - start)
        return result

    def of(self, step: str) -> float:
        seen = sorted(self._seen.get(step, ()))
        return seen[len(seen) // 2] if seen else self.default


# ------------------------------------------------------------------ kill and retry


def kill_during(
    call: Callable[[], Any], kill: Callable[[], None], delay: float, timeout: float = 120
) -> bool:
    """Run ``call`` in a thread and ``kill`` after ``delay`` s; True if the call was still running.

    Whatever the interrupted call answers (an error, mostly) is discarded: only the retry's
    answer counts. A call that does not return within ``timeout`` of the kill is a hang.
    """
    done = threading.Event()

    def run() -> None:
        try:
            call()
        except Exception:  # the interrupted call may fail in any way
            pass
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    finished_early = done.wait(delay)
    kill()
    if not done.wait(timeout):
        raise AssertionError(f"the interrupted call did not return within {timeout}s of the kill")
    thread.join(timeout=5)
    return not finished_early


def retry(call: Callable[[], T], transient: Callable[[Exception], bool], what: str, timeout: float = 60) -> T:
    """Repeat ``call`` while it fails in a way a crash explains; anything else fails the test."""
    failures: list[Exception] = []

    def attempt() -> tuple[T] | None:
        try:
            return (call(),)  # a tuple, so that a falsy answer still counts as done
        except Exception as exc:
            if not transient(exc):
                raise _FailedForGood(exc) from exc
            failures.append(exc)
            return None

    try:
        (answer,) = wait_until(attempt, timeout=timeout, interval=0.2, what=what)
    except _FailedForGood as bad:
        raise AssertionError(f"{what}: the retry failed for good: {bad.cause!r}") from bad.cause
    except AssertionError:
        raise AssertionError(f"{what}: still failing after {timeout}s: {failures[-1]!r}") from failures[-1]
    return answer


class _FailedForGood(Exception):
    """A failure no crash explains: :func:`retry` stops at once instead of waiting it out."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(repr(cause))
        self.cause = cause


def set_latency(emu: EmulatorProcess, ms: float, paths: str | None = None) -> None:
    """Slow controller requests (all, or those matching ``paths``), so a kill lands mid-call."""
    emu.control("latency", {"ms": ms, "paths": paths}).raise_for_status()


def hard_kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
    if proc is not None:
        proc.wait(timeout=30)


# ------------------------------------------------------------------ data


def write_blob(directory: Path, rng: random.Random, size: int = 256 * 1024) -> tuple[Path, str]:
    """A file of random bytes, synced, and its digest: what must survive every crash."""
    path = directory / "fault-data.bin"
    data = rng.randbytes(size)
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return path, hashlib.sha256(data).hexdigest()


def digest_of(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# ------------------------------------------------------------------ leaks


def _emu_get(emu: EmulatorProcess, path: str) -> Any:
    answer = requests.get(f"{emu.url}{path}", timeout=30, **emu.request_kwargs())  # type: ignore[arg-type]
    answer.raise_for_status()
    return answer.json()


def _unescape(field_text: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_text)


def mountinfo_lines() -> list[tuple[str, str]]:
    """(pid, line) for every mount of every mount namespace on the host, each namespace once."""
    seen: set[str] = set()
    found: list[tuple[str, str]] = []
    pids = ["self", *sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int)]
    for pid in pids:
        try:
            ns = os.readlink(f"/proc/{pid}/ns/mnt")
            if ns in seen:
                continue
            with open(f"/proc/{pid}/mountinfo") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue  # the process exited, or is not ours to read
        seen.add(ns)
        found += [(pid, line) for line in lines]
    return found


def loops_over(directory: Path) -> list[str]:
    """Loop devices whose backing file lies under ``directory`` (the emulator's state dir)."""
    root = os.path.realpath(directory) + "/"
    out = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    loops = []
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and (parts[1].strip().removesuffix(" (deleted)") + "/").startswith(root):
            loops.append(parts[0])
    return loops


def dev_number(dev: str) -> str | None:
    try:
        rdev = os.stat(dev).st_rdev
    except OSError:
        return None
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def mounts_naming(dirs: Iterable[Path], devices: Iterable[str] = ()) -> list[str]:
    """Mounts in any namespace whose point, root or source names one of ``dirs``, or one of ``devices``."""
    prefixes = [os.path.realpath(d) + "/" for d in dirs]
    devnos = {n for n in (dev_number(d) for d in devices) if n}
    hits = []
    for pid, line in mountinfo_lines():
        fields = line.split()
        sep = fields.index("-")
        paths = [_unescape(fields[3]), _unescape(fields[4]), _unescape(fields[sep + 2])]
        if any((p + "/").startswith(prefix) for p in paths for prefix in prefixes) or fields[2] in devnos:
            hits.append(f"pid {pid}: {' '.join(fields[2:5])} {fields[sep + 2]}")
    return hits


def leaks(
    emu: EmulatorProcess, dirs: Sequence[Path], tmpdir: Path | None, tls_before: set[str] | None = None
) -> list[str]:
    """Everything a finished lifecycle left behind; empty when nothing leaked."""
    found = []
    for rd in _emu_get(emu, "/v1/resource-definitions"):
        found.append(f"resource definition {rd['name']}")
    for rsc in _emu_get(emu, "/v1/view/resources"):
        flags = set(rsc.get("flags") or ())
        kind = "diskless resource" if flags & {"DISKLESS", "DRBD_DISKLESS"} else "resource"
        found.append(f"{kind} {rsc['name']} on {rsc['node_name']}")
    for snap in _emu_get(emu, "/v1/view/snapshots"):
        found.append(f"snapshot {snap['resource_name']}/{snap['name']}")
    loops = loops_over(emu.state_dir)
    found += [f"loop device {dev} over the emulator's files" for dev in loops]
    found += [f"mount {m}" for m in mounts_naming([*dirs, emu.state_dir, emu.dev_dir], loops)]
    if tmpdir is not None and tmpdir.exists():
        found += [f"temp file {p}" for p in sorted(os.listdir(tmpdir))]
    if tls_before is not None:
        found += [f"temp file {p}" for p in sorted(set(glob.glob(TLS_TEMP_GLOB)) - tls_before)]
    return found


def tls_temp_files() -> set[str]:
    return set(glob.glob(TLS_TEMP_GLOB))


# ------------------------------------------------------------------ a container's hold on a volume


class Holder:
    """What a container is to the mount table: a private mount namespace holding a bind of a path.

    Docker mounts a volume, then starts a container whose namespace binds the mountpoint;
    the container's exit drops that reference, and only then does Docker call Unmount. The
    namespace drops every other loop-backed mount it copied from the host at once, so it
    never keeps another test's filesystem busy.
    """

    SCRIPT = r"""
set -e
mount --bind "$1" "$2"
awk -v keep="$2" '$3 ~ /^7:/ && $5 != keep {print $5}' /proc/self/mountinfo | sort -r |
while read -r point; do umount -l "$(printf '%b' "$point")" 2>/dev/null || true; done
echo ready
exec sleep 3600
"""

    def __init__(self, source: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        self.target = target
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                self.SCRIPT,
                "holder",
                source,
                str(target),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise AssertionError(f"the container stand-in could not bind {source}: {line!r}")

    def stop(self) -> None:
        hard_kill(self.proc)  # type: ignore[arg-type]
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        with contextlib.suppress(OSError):
            self.target.rmdir()


# ------------------------------------------------------------------ a lifecycle with kills


class Lifecycle:
    """What :func:`run_lifecycle` drives: named idempotent steps plus the test's own checks.

    ``findings`` collects what the checks between steps saw left behind (a resource a
    release should have removed) while the life goes on, so one leak does not hide the next.
    """

    findings: list[str]

    def step(self, name: str) -> Callable[[], None]:
        raise NotImplementedError

    def after(self, step: str) -> None:
        """The test's work between steps (write data, check a size)."""

    def data_problem(self, step: str) -> str | None:
        """After a kill in ``step`` and its retry: None when the data reads back intact."""
        return None


@dataclass
class Killer:
    """How to crash and restart the process a scenario targets, and what it is called."""

    kind: str
    kill: Callable[[], None]
    restart: Callable[[], None]
    transient: Callable[[Exception], bool]


def run_lifecycle(
    life: Lifecycle,
    steps: Sequence[str],
    kills: Sequence[Kill],
    killer: Killer | None,
    emu: EmulatorProcess,
    durations: StepDurations,
    log: FaultLog,
    latency_ms: float = DEFAULT_LATENCY_MS,
) -> list[str]:
    """Every step in order; a step with a planned kill runs under controller latency, is killed,
    restarted and retried to completion. Returns the data problems found after the kills."""
    problems = []
    planned = {k.step: k for k in kills}
    for step in steps:
        kill = planned.get(step)
        if kill is None or killer is None:
            set_latency(emu, latency_ms if killer is None else 0)
            try:
                durations.timed(step, life.step(step))
            except Exception as exc:
                holders = mounts_naming([emu.dev_dir], loops_over(emu.state_dir))
                raise AssertionError(
                    f"{step} (not killed) failed: {exc!r}; mounts of the devices: {holders}"
                ) from exc
            life.after(step)
            continue
        set_latency(emu, kill.latency_ms, kill.paths)
        delay = kill.fraction * (kill.latency_ms / 1000 if kill.paths else durations.of(step))
        mid = kill_during(life.step(step), killer.kill, delay)
        log.killed(killer.kind, step, mid)
        if kill.paths:  # let the controller apply the request the dead caller sent
            time.sleep(max(0.0, kill.latency_ms / 1000 - delay) + 0.3)
        killer.restart()
        set_latency(emu, 0)
        retry(life.step(step), killer.transient, f"{step} after {killer.kind} was killed at {delay:.3f}s")
        life.after(step)
        problem = life.data_problem(step)
        if problem:
            problems.append(problem)
            log.data_errors.append(f"{killer.kind}: {problem}")
    set_latency(emu, 0)
    return problems


def run_lives(
    new_life: Callable[[int], Lifecycle],
    steps: Sequence[str],
    kills: Sequence[Kill],
    killer: Killer,
    emu: EmulatorProcess,
    durations: StepDurations,
    log: FaultLog,
    on_error: Callable[[], str],
) -> list[str]:
    """One life per planned kill; every problem of every life, a failed life not stopping the rest."""
    found: list[str] = []
    for n, kill in enumerate(kills):
        life = new_life(n)
        try:
            found += run_lifecycle(life, steps, [kill], killer, emu, durations, log)
        except Exception as exc:
            found.append(f"life {n} (kill in {kill.step} at {kill.fraction:.2f}) failed: {exc}\n{on_error()}")
            log.failed_lives.append(f"{killer.kind} in {kill.step}: {str(exc).splitlines()[0][:300]}")
        found += life.findings
        log.leaks += [f"{killer.kind} in {kill.step}: {item}" for item in life.findings]
    return found
