"""``linstor-plugin-doctor``: check that this node can serve LINSTOR volumes, one verdict per line.

Most support questions come down to a handful of facts: is the controller reachable,
is this node known to LINSTOR and online, is there space, are the filesystem tools and
the DRBD module there, and is the plugin's socket alive. The doctor checks exactly those,
prints ``OK``, ``WARN`` or ``FAIL`` with what to do about each problem, and exits
non-zero when anything failed so it can gate scripts and readiness checks. It only reads:
it never creates, changes or deletes anything.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from glob import glob
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from docker_plugin.settings import DEFAULT_CONFIG_FILE
from plugin import errors
from plugin.config import Config, load_config
from plugin.linstor import features as features
from plugin.linstor.records import Node, StoragePool, VersionInfo
from plugin.unix_http import UnixHTTPConnection
from plugin.version import add_version_flag

OK, WARN, FAIL = "OK", "WARN", "FAIL"

DEFAULT_CSI_ENDPOINT = "unix:///var/lib/kubelet/plugins/linstor.csi.linbit.com/csi.sock"
DEFAULT_DOCKER_SOCKET = "/run/docker/plugins/linstor.sock"
# A managed Docker plugin's socket lives under the plugin id.
MANAGED_DOCKER_SOCKETS = "/run/docker/plugins/*/linstor.sock"
LOW_SPACE_FRACTION = 0.10
DISKLESS_KINDS = {"DISKLESS"}


@dataclass(frozen=True)
class Tool:
    """A host command the plugin runs, the package that provides it and how bad its absence is."""

    command: str
    package: str
    needed_for: str
    verdict_if_missing: str


TOOLS: tuple[Tool, ...] = (
    Tool("blkid", "util-linux", "the check that keeps formatted devices from being formatted again", FAIL),
    Tool("mount", "mount (util-linux)", "mounting volumes", FAIL),
    Tool("umount", "mount (util-linux)", "unmounting volumes", FAIL),
    Tool("mkfs.ext4", "e2fsprogs", "ext4 volumes (the default filesystem)", FAIL),
    Tool("resize2fs", "e2fsprogs", "growing ext4 volumes", FAIL),
    Tool("dumpe2fs", "e2fsprogs", "sizing ext4 filesystems before a grow", FAIL),
    Tool("e2fsck", "e2fsprogs", "checking ext4 filesystems before an offline grow", FAIL),
    Tool("blockdev", "util-linux", "read-only raw block volumes", FAIL),
    Tool("mkfs.xfs", "xfsprogs", "xfs volumes", WARN),
    Tool("xfs_growfs", "xfsprogs", "growing xfs volumes", WARN),
    Tool("xfs_info", "xfsprogs", "sizing xfs filesystems", WARN),
    Tool("xfs_io", "xfsprogs", "the postMountXfsOpts StorageClass parameter", WARN),
    Tool("mkfs.btrfs", "btrfs-progs", "btrfs volumes", WARN),
    Tool("losetup", "mount (util-linux)", "the single-node emulator only", WARN),
)


@dataclass(frozen=True)
class Result:
    """One line of the report."""

    check: str
    verdict: str
    message: str
    hint: str = ""

    def line(self) -> str:
        text = f"{self.verdict:<4}  {self.check}: {self.message}"
        return f"{text} -> {self.hint}" if self.hint and self.verdict != OK else text


class LinstorApi(Protocol):
    """The part of :class:`plugin.linstor.client.LinstorClient` the doctor reads."""

    def controller_version(self) -> VersionInfo: ...

    def get_node(self, node: str) -> Node: ...

    def node_storage_pools(self, node: str) -> list[StoragePool]: ...


Probe = Callable[[str], tuple[str, str, str]]
PROBE_TIMEOUT = 3.0


def probe_csi(path: str) -> tuple[str, str, str]:
    """Ask the driver's gRPC health service: a socket can accept while the server is hung."""
    channel = grpc.insecure_channel(f"unix://{path}")
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT
        )
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "error"
        return FAIL, f"does not answer gRPC health checks ({code})", "restart the CSI driver and read its log"
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if status == "SERVING":
        return OK, "gRPC health SERVING", ""
    return WARN, f"gRPC health {status}", "the driver is shutting down or not ready; check it again shortly"


def probe_docker(path: str) -> tuple[str, str, str]:
    """Ask the Docker plugin's /health: it says whether the plugin itself reaches LINSTOR."""
    conn = UnixHTTPConnection(path, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", "/health")
        answer = json.loads(conn.getresponse().read())
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return FAIL, f"does not answer /health ({exc})", "restart the plugin and read its log"
    finally:
        conn.close()
    if not isinstance(answer, dict):
        return FAIL, "answers /health with something other than a JSON object", "is this the LINSTOR plugin?"
    mounted = answer.get("mounted_volumes", "?")
    if answer.get("linstor_reachable") is False:
        return (
            WARN,
            f"plugin answers but cannot reach LINSTOR ({mounted} volumes mounted)",
            "check the plugin's LS_CONTROLLERS / controllers setting",
        )
    return OK, f"plugin healthy, {mounted} volumes mounted", ""


@dataclass
class Host:
    """Everything the doctor reads from this machine, replaceable in tests."""

    which: Callable[[str], str | None] = shutil.which
    proc_drbd: Path = Path("/proc/drbd")
    run: Callable[[Sequence[str]], subprocess.CompletedProcess[str]] = field(
        default=lambda argv: subprocess.run(
            list(argv), capture_output=True, text=True, timeout=10, check=False
        )
    )
    glob: Callable[[str], list[str]] = glob
    probe_csi: Probe = probe_csi
    probe_docker: Probe = probe_docker


def check_controller(client: LinstorApi, config: Config) -> Result:
    where = ", ".join(config.controllers)
    try:
        version = client.controller_version()
    except errors.Unavailable as exc:
        hint = "" if "LS_CONTROLLERS" in str(exc) else "start the controller or fix LS_CONTROLLERS"
        return Result("controller", FAIL, f"{where}: {exc}", hint)
    except errors.VolumeError as exc:
        return Result(
            "controller",
            FAIL,
            f"{where} did not answer like a LINSTOR controller: {exc}",
            "check that the URL points at the LINSTOR REST API (port 3370, or 3371 for TLS)",
        )
    verdict, sentence = features.support_verdict(features.ControllerVersion.of(version))
    if verdict == "old":
        return Result(
            "controller", FAIL, f"reachable at {where}, but {sentence}", "upgrade the LINSTOR controller"
        )
    if verdict != "ok":
        return Result(
            "controller",
            WARN,
            f"reachable at {where}; {sentence}",
            "volumes should work; report anything that does not",
        )
    return Result("controller", OK, f"reachable at {where}, {sentence}")


def check_node(client: LinstorApi, node: str) -> tuple[Result, bool]:
    """The verdict, and whether LINSTOR knows the node (its pools are worth showing then)."""
    try:
        info = client.get_node(node)
    except errors.NotFound:
        return Result(
            "node",
            FAIL,
            f"node {node!r} is not registered in LINSTOR",
            f"register it (linstor node create {node} <address>) or pass --node / set LS_NODE_NAME "
            "to the name LINSTOR knows this host by",
        ), False
    except errors.VolumeError as exc:
        return Result(
            "node", FAIL, f"cannot read node {node!r}: {exc}", "see the controller's error reports"
        ), False
    status = (info.connection_status or "UNKNOWN").upper()
    kind = info.type.upper()
    if status == "ONLINE":
        return Result("node", OK, f"{node!r} is registered ({kind or 'unknown type'}) and ONLINE"), True
    return Result(
        "node",
        FAIL,
        f"{node!r} is registered but its satellite is {status}",
        "start linstor-satellite on this host and check the controller can reach it (port 3366)",
    ), True


def _human(kib: int) -> str:
    size = float(kib) * 1024
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"


def check_storage_pools(client: LinstorApi, node: str) -> list[Result]:
    try:
        pools = client.node_storage_pools(node)
    except errors.VolumeError as exc:
        return [
            Result(
                "storage pools",
                FAIL,
                f"cannot list the storage pools of {node!r}: {exc}",
                "see the controller's error reports",
            )
        ]
    diskful = [p for p in pools if p.provider_kind.upper() not in DISKLESS_KINDS]
    if not diskful:
        return [
            Result(
                "storage pools",
                WARN,
                f"{node!r} has no storage pool with disks; volumes can only be attached here diskless",
                "create one (linstor storage-pool create lvmthin|zfsthin|filethin ...) to keep data here",
            )
        ]
    results = []
    for pool in sorted(diskful, key=lambda p: p.name):
        name = f"storage pool {pool.name or '?'}"
        kind = pool.provider_kind or "?"
        free, total = pool.free_kib, pool.total_kib
        reports = list(pool.report_messages)
        if reports:
            results.append(
                Result(
                    name,
                    FAIL,
                    f"{kind} pool reports a problem: {'; '.join(reports)}",
                    "fix the backing storage on this node, then check linstor storage-pool list",
                )
            )
        elif free is None or total is None:
            results.append(
                Result(
                    name,
                    WARN,
                    f"{kind} pool does not report its capacity",
                    "check that the satellite can read the backing storage",
                )
            )
        elif total <= 0 or free < total * LOW_SPACE_FRACTION:
            results.append(
                Result(
                    name,
                    WARN,
                    f"{kind}, only {_human(free)} free of {_human(total)}",
                    "add capacity or remove unused volumes and snapshots",
                )
            )
        else:
            results.append(Result(name, OK, f"{kind}, {_human(free)} free of {_human(total)}"))
    return results


def check_tools(host: Host, tools: Iterable[Tool] = TOOLS) -> list[Result]:
    results = []
    for tool in tools:
        path = host.which(tool.command)
        if path:
            results.append(Result(f"tool {tool.command}", OK, path))
        else:
            results.append(
                Result(
                    f"tool {tool.command}",
                    tool.verdict_if_missing,
                    f"not found on PATH; needed for {tool.needed_for}",
                    f"install {tool.package}",
                )
            )
    return results


def check_drbd(host: Host) -> Result:
    try:
        text = host.proc_drbd.read_text()
    except OSError:
        text = None
    if text is not None:
        first = next((line.strip() for line in text.splitlines() if line.startswith("version:")), "")
        version = first.split()[1] if len(first.split()) > 1 else "unknown"
        if version.startswith("8."):
            return Result(
                "drbd",
                WARN,
                f"DRBD {version} is loaded; LINSTOR replication needs DRBD 9",
                "install the DRBD 9 kernel module (drbd-dkms) and reload it",
            )
        return Result("drbd", OK, f"kernel module loaded, DRBD {version}")
    try:
        probe = host.run(["modinfo", "-F", "version", "drbd"])
        found = probe.returncode == 0 and probe.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        found = ""
    if found:
        return Result("drbd", WARN, f"DRBD {found} is installed but not loaded", "modprobe drbd")
    return Result(
        "drbd",
        WARN,
        "DRBD kernel module not found; replicated (drbd layer) volumes cannot be used on this node",
        "install DRBD 9 (drbd-dkms) for replication; not needed with the single-node emulator "
        "or with storage-only layer lists",
    )


def _socket_result(name: str, path: str, missing_hint: str, probe: Probe | None = None) -> Result:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return Result(name, WARN, f"{path} does not exist", missing_hint)
    except OSError as exc:
        return Result(name, FAIL, f"cannot inspect {path}: {exc.strerror}", "run the doctor as root")
    if not stat.S_ISSOCK(info.st_mode):
        return Result(
            name,
            FAIL,
            f"{path} exists but is not a socket",
            "remove it; the daemon creates its socket at start",
        )
    mode = stat.S_IMODE(info.st_mode)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
        except PermissionError:
            return Result(
                name,
                FAIL,
                f"{path} is not accessible to this user (mode {mode:04o})",
                "run the doctor as root",
            )
        except OSError as exc:
            return Result(
                name,
                FAIL,
                f"{path} exists but nothing accepts connections ({exc.strerror})",
                "the daemon is not running: restart it (a stale socket is replaced at start)",
            )
    verdict, detail, hint = probe(path) if probe else (OK, "", "")
    detail = f", {detail}" if detail else ""
    if verdict == FAIL:
        return Result(name, FAIL, f"{path} accepts connections but {detail[2:]}", hint)
    if mode & stat.S_IWOTH:
        return Result(
            name,
            WARN,
            f"{path} is listening but writable by every user (mode {mode:04o}){detail}",
            f"chmod o-w {path}: anyone who can write it can create and delete volumes",
        )
    return Result(
        name, verdict, f"{path} is listening (mode {mode:04o}, owner uid {info.st_uid}){detail}", hint
    )


def check_sockets(host: Host, csi_endpoint: str, docker_socket: str) -> list[Result]:
    results = []
    if csi_endpoint.startswith("unix://"):
        results.append(
            _socket_result(
                "csi socket",
                csi_endpoint.removeprefix("unix://"),
                "the CSI node plugin is not running here (fine if this host does not use CSI)",
                host.probe_csi,
            )
        )
    else:
        results.append(
            Result(
                "csi socket",
                FAIL,
                f"{csi_endpoint} is not a unix:// endpoint",
                "CSI endpoints are unix sockets: unix:///path/csi.sock",
            )
        )
    managed = sorted(host.glob(MANAGED_DOCKER_SOCKETS))
    if os.path.exists(docker_socket) or not managed:
        results.append(
            _socket_result(
                "docker socket",
                docker_socket,
                "the Docker volume plugin is not running here (fine if this host does not use it)",
                host.probe_docker,
            )
        )
    for path in managed:
        results.append(_socket_result("docker managed plugin socket", path, "", host.probe_docker))
    return results


def run_checks(
    config: Config, client: LinstorApi, host: Host, csi_endpoint: str, docker_socket: str
) -> list[Result]:
    """All checks in report order. LINSTOR checks after an unreachable controller are skipped."""
    results = [check_controller(client, config)]
    if results[0].verdict == OK:
        node, registered = check_node(client, config.node_name)
        results.append(node)
        if registered:
            results.extend(check_storage_pools(client, config.node_name))
    else:
        results.append(
            Result(
                "node",
                WARN,
                f"{config.node_name!r} not checked: no controller to ask",
                "fix the controller check first",
            )
        )
    results.extend(check_tools(host))
    results.append(check_drbd(host))
    results.extend(check_sockets(host, csi_endpoint, docker_socket))
    return results


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="linstor-plugin-doctor",
        description="Check that this node can serve LINSTOR volumes; exits 1 if any check FAILs.",
    )
    p.add_argument("--node", help="LINSTOR node name of this host (default: LS_NODE_NAME or the host name)")
    p.add_argument("--controllers", help="LINSTOR controllers, comma separated (default: LS_CONTROLLERS)")
    p.add_argument(
        "--config-file", default=DEFAULT_CONFIG_FILE, help="Docker plugin config file (default: %(default)s)"
    )
    p.add_argument(
        "--csi-endpoint",
        default=env.get("CSI_ENDPOINT", DEFAULT_CSI_ENDPOINT),
        help="CSI socket to check (default: CSI_ENDPOINT or %(default)s)",
    )
    p.add_argument(
        "--docker-socket",
        default=env.get("LS_DOCKER_SOCKET", DEFAULT_DOCKER_SOCKET),
        help="Docker plugin socket to check (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object per check instead of text")
    add_version_flag(p)
    return p


def counted(number: int, noun: str) -> str:
    """``1 check``, ``2 checks``: the summary line reads as a sentence."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def main(argv: Sequence[str] | None = None, host: Host | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        "controllers": args.controllers,
        "node_name": args.node,
        "config_file": args.config_file or None,
        # A doctor must answer quickly even when the controller hangs.
        "connect_timeout": 3.0,
        "read_timeout": 15.0,
    }
    try:
        config = load_config(overrides)
    except errors.VolumeError as exc:
        results = [Result("configuration", FAIL, str(exc), "fix the setting named above")]
    else:
        from plugin.linstor.client import LinstorClient

        client = LinstorClient(config, retries=0)
        try:
            results = run_checks(config, client, host or Host(), args.csi_endpoint, args.docker_socket)
        finally:
            client.close()
    for result in results:
        print(json.dumps(asdict(result)) if args.json else result.line())
    failed = [r for r in results if r.verdict == FAIL]
    if not args.json:
        warned = sum(r.verdict == WARN for r in results)
        print(f"{counted(len(results), 'check')}: {len(failed)} failed, {counted(warned, 'warning')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
