"""Daemon start-up loads its libraries with the garbage collector paused, and leaves it on."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from plugin.startup import collector_paused
from tests.unit.test_lazy_imports import run_fresh


@pytest.fixture(autouse=True)
def _collector_left_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.unfreeze()  # the test process's objects take part in collections again


def test_what_the_block_made_is_frozen_out_of_later_passes() -> None:
    with collector_paused():
        made = [[index] for index in range(1000)]
    assert gc.get_freeze_count() >= len(made)


def test_the_collector_is_paused_in_the_block_and_on_after_it() -> None:
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # only the outermost block turns it back on
    assert gc.isenabled()


def test_an_error_in_the_block_still_turns_the_collector_back_on() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("start failed")
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("entry", "libraries"),
    [
        ("csi.cli", ["grpc", "google.protobuf", "prometheus_client"]),
        ("docker_plugin.cli", ["waitress", "requests", "prometheus_client"]),
    ],
)
def test_a_daemon_loads_its_libraries_with_the_collector_paused_and_leaves_it_on(
    entry: str, libraries: list[str]
) -> None:
    out = run_fresh(
        f"""
        import gc, importlib, sys
        seen = {{}}

        class Watch:  # finds nothing itself: notes the collector's state when a library is looked up
            def find_spec(self, name, path=None, target=None):
                if name in {libraries!r}:
                    seen.setdefault(name, gc.isenabled())
                return None

        sys.meta_path.insert(0, Watch())
        importlib.import_module("{entry}")
        print(sorted(seen.items()), gc.isenabled())
        """
    )
    assert out == f"{sorted((name, False) for name in libraries)} True"


def test_the_csi_driver_builds_its_linstor_client_with_the_collector_paused() -> None:
    out = run_fresh(
        """
        import gc, os, signal, sys, tempfile, threading, time
        from csi import cli
        seen = {}

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "requests":
                    seen.setdefault(name, gc.isenabled())
                return None

        def stop_when_running():
            while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGTERM)

        sys.meta_path.insert(0, Watch())
        threading.Thread(target=stop_when_running, daemon=True).start()
        sock = tempfile.mkdtemp(prefix="gc-") + "/csi.sock"
        code = cli.main([
            "--endpoint", "unix://" + sock, "--node", "n1", "--controllers", "http://127.0.0.1:9",
            "--mode", "controller", "--grace-period", "0", "--log-level", "error",
        ])
        print(code, seen, gc.isenabled())
        """
    )
    assert out.splitlines()[-1] == "0 {'requests': False} True"
