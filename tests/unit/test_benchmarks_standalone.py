"""The benchmarks need the runtime dependencies only: none of them imports pytest."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

# Refuses any import of pytest, then imports every benchmark module and the helpers they share.
PROBE = """
import builtins
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.split(".")[0] in ("pytest", "_pytest", "conftest"):
        raise ImportError("benchmark imported " + name)
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
import importlib, pathlib
for path in sorted(pathlib.Path("benchmarks").glob("*.py")):
    importlib.import_module("benchmarks." + path.stem)
import testkit.dockerd, testkit.emulator, testkit.processes
print("imported", len(list(pathlib.Path("benchmarks").glob("*.py"))))
"""


def test_every_benchmark_imports_without_pytest() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported ")
    assert int(done.stdout.split()[1]) >= 5
