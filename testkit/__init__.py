"""Process helpers shared by the tests and the benchmarks.

Nothing here imports pytest, so the benchmarks run with the runtime dependencies alone:
an emulator as a child process on a free port (:mod:`testkit.emulator`), the Docker
plugin and a private ``dockerd`` (:mod:`testkit.dockerd`), and stopping children the
same way everywhere (:mod:`testkit.processes`).
"""
