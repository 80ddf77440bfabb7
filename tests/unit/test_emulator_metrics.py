"""The emulator's Prometheus metrics, scraped from in-process servers over HTTP.

The servers run on free ports over the in-memory storage fake of the core tests, so no
root or loop devices are needed. Requests are labelled by endpoint template, so names a
client sends must never show up in a label value.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from emulator.cli import _parser
from emulator.config import Config
from emulator.core import Emulator
from emulator.server import EmulatorServer
from testkit.waiting import wait_until
from tests.unit.test_emulator_core import FakeStorage

REPO_ROOT = Path(__file__).resolve().parents[2]
RD_NAME = "Metrics_Secret_Rd7"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def start_server(tmp: Path, metrics: bool = True) -> EmulatorServer:
    cfg = Config(state_dir=tmp / "state", dev_dir=tmp / "dev", local_node="here", virtual_nodes=("vb", "vc"))
    emu = Emulator(cfg, FakeStorage(tmp / "pools"))
    emu.bootstrap()
    server = EmulatorServer(emu, "127.0.0.1", 0, metrics=metrics)
    server.start()
    return server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., EmulatorServer]]:
    started: list[EmulatorServer] = []

    def make(name: str = "a", metrics: bool = True) -> EmulatorServer:
        server = start_server(tmp_path / name, metrics)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def url(server: EmulatorServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def scrape_text(server: EmulatorServer) -> str:
    reply = requests.get(url(server, "/metrics"), timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain; version=")
    return reply.text


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def requests_total(found: Samples, method: str, endpoint: str, status: int) -> float:
    return value(
        found, "linstor_emulator_requests_total", method=method, endpoint=endpoint, status=str(status)
    )


def spawn(server: EmulatorServer, name: str, replicas: int) -> None:
    body = {
        "resource_definition_name": name,
        "volume_sizes": [4096],
        "select_filter": {"place_count": replicas},
    }
    reply = requests.post(url(server, "/v1/resource-groups/DfltRscGrp/spawn"), json=body, timeout=10)
    assert reply.status_code == 201, reply.text


def test_requests_are_counted_by_method_endpoint_template_and_status(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    spawn(server, RD_NAME, 1)
    for _ in range(2):
        assert requests.get(url(server, f"/v1/resource-definitions/{RD_NAME}"), timeout=10).status_code == 200
    assert requests.get(url(server, "/v1/resource-definitions/NoSuchRd9"), timeout=10).status_code == 404
    assert requests.get(url(server, f"/v1/no-such-thing/{RD_NAME}"), timeout=10).status_code == 404
    assert requests.put(url(server, "/health"), timeout=10).status_code == 405
    assert requests.post(url(server, "/_emu/nodes/vb/offline"), timeout=10).status_code == 200

    found = samples(scrape_text(server))
    rd = "/v1/resource-definitions/{rd}"
    assert requests_total(found, "POST", "/v1/resource-groups/{rg}/spawn", 201) == 1
    assert requests_total(found, "GET", rd, 200) == 2
    assert requests_total(found, "GET", rd, 404) == 1
    assert requests_total(found, "GET", "unmatched", 404) == 1
    assert requests_total(found, "PUT", "/health", 405) == 1
    assert requests_total(found, "POST", "/_emu/nodes/{node}/{what}", 200) == 1
    latency_count = value(found, "linstor_emulator_request_seconds_count", method="GET", endpoint=rd)
    assert latency_count == 3
    # The scrape that produced these figures is counted once it has been answered.
    assert requests_total(samples(scrape_text(server)), "GET", "/metrics", 200) == 1


def test_no_name_a_client_sends_becomes_a_label_value(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    spawn(server, RD_NAME, 2)
    requests.get(url(server, f"/v1/resource-definitions/{RD_NAME}/resources"), timeout=10)
    requests.post(url(server, f"/_emu/resources/{RD_NAME}/here/in_use"), json={"in_use": True}, timeout=10)
    requests.get(url(server, f"/{RD_NAME}?x={RD_NAME}"), timeout=10)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(f"{RD_NAME} /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert conn.recv(65536).startswith(b"HTTP/1.1 501")

    found = samples(scrape_text(server))
    label_values = {v for _, labels in found for _, v in labels}
    assert not {v for v in label_values if RD_NAME.lower() in v.lower()}
    assert {"here", "vb", "vc"}.isdisjoint(label_values)
    assert (
        value(found, "linstor_emulator_requests_total", method="other", endpoint="/v1/nodes", status="501")
        == 1
    )
    methods = {
        dict(labels).get("method") for name, labels in found if name == "linstor_emulator_requests_total"
    }
    assert methods <= {"GET", "POST", "other"}


def test_gauges_follow_definitions_resources_snapshots_and_devices(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    found = samples(scrape_text(server))
    for gauge in ("resource_definitions", "resources", "snapshots", "attached_devices"):
        assert value(found, f"linstor_emulator_{gauge}") == 0, gauge
    spawn(server, "rd_one", 3)  # here, vb, vc: only the local replica has a device
    spawn(server, "rd_two", 1)
    snap = requests.post(
        url(server, "/v1/resource-definitions/rd_one/snapshots"), json={"name": "s1"}, timeout=10
    )
    assert snap.status_code == 201, snap.text

    found = samples(scrape_text(server))
    assert value(found, "linstor_emulator_resource_definitions") == 2
    assert value(found, "linstor_emulator_resources") == 4
    assert value(found, "linstor_emulator_snapshots") == 1
    assert value(found, "linstor_emulator_attached_devices") == len(server.emu.devices) >= 1

    for path in ("/v1/resource-definitions/rd_one/snapshots/s1", "/v1/resource-definitions/rd_two"):
        assert requests.delete(url(server, path), timeout=10).status_code == 200, path
    found = samples(scrape_text(server))
    assert value(found, "linstor_emulator_resource_definitions") == 1
    assert value(found, "linstor_emulator_resources") == 3
    assert value(found, "linstor_emulator_snapshots") == 0


def test_injected_faults_are_counted_and_never_hit_the_scrape(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    rule = {"path_regex": ".*", "status": 503, "ret_code": 999, "count": 2}
    assert requests.post(url(server, "/_emu/errors"), json=rule, timeout=10).status_code == 200
    scrape_text(server)  # not consumed by the rule
    assert requests.get(url(server, "/v1/nodes"), timeout=10).status_code == 503
    assert requests.get(url(server, "/v1/nodes"), timeout=10).status_code == 503
    assert requests.post(url(server, "/_emu/latency"), json={"ms": 1}, timeout=10).status_code == 200
    assert requests.get(url(server, "/v1/nodes"), timeout=10).status_code == 200

    found = samples(scrape_text(server))
    assert value(found, "linstor_emulator_injected_faults_total", kind="error") == 2
    assert value(found, "linstor_emulator_injected_faults_total", kind="latency") == 1
    assert requests_total(found, "GET", "/v1/nodes", 503) == 2


def test_an_injected_outage_is_counted(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    assert requests.post(url(server, "/_emu/outage"), json={"seconds": 0.3}, timeout=10).status_code == 200
    went_down = False

    def scraped_after_the_outage() -> str:
        nonlocal went_down
        try:
            answer = scrape_text(server)
        except requests.ConnectionError:
            went_down = True
            return ""
        return answer if went_down else ""

    text = wait_until(
        scraped_after_the_outage, timeout=10, interval=0.02, what="the listener closing and coming back"
    )
    assert value(samples(text), "linstor_emulator_injected_faults_total", kind="outage") == 1


def test_each_server_has_its_own_registry(servers) -> None:  # type: ignore[no-untyped-def]
    first, second = servers("a"), servers("b")
    for _ in range(3):
        requests.get(url(first, "/v1/nodes"), timeout=10)
    requests.get(url(second, "/v1/nodes"), timeout=10)
    assert requests_total(samples(scrape_text(first)), "GET", "/v1/nodes", 200) == 3
    assert requests_total(samples(scrape_text(second)), "GET", "/v1/nodes", 200) == 1


def test_scrape_speaks_openmetrics_when_asked_and_refuses_other_methods(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    reply = requests.get(
        url(server, "/metrics"), headers={"Accept": "application/openmetrics-text"}, timeout=10
    )
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    assert reply.text.rstrip().endswith("# EOF")
    refused = requests.post(url(server, "/metrics"), timeout=10)
    assert refused.status_code == 405
    assert refused.json()[0]["ret_code"] < 0


def test_metrics_can_be_turned_off(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers(metrics=False)
    assert requests.get(url(server, "/v1/nodes"), timeout=10).status_code == 200
    assert requests.get(url(server, "/metrics"), timeout=10).status_code == 404
    assert _parser().parse_args(["serve", "--state-dir", "x"]).metrics is True
    assert _parser().parse_args(["serve", "--state-dir", "x", "--no-metrics"]).metrics is False


def test_every_emulator_metric_is_documented(servers) -> None:  # type: ignore[no-untyped-def]
    server = servers()
    registered = {m.name for m in server.metrics.registry.collect() if m.name.startswith("linstor_emulator_")}
    readme = (REPO_ROOT / "emulator" / "README.md").read_text()
    documented = set(re.findall(r"`(linstor_emulator_[a-z_]+)`", readme))
    # The client library names counter families without their _total suffix.
    assert {re.sub(r"_total$", "", n) for n in documented} == registered
