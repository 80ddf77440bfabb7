"""A stand-in for the Kubernetes API server: the one call the driver makes, a PVC GET.

It speaks HTTPS with a certificate from a throwaway CA, checks the service account's
bearer token, and answers ``GET /api/v1/namespaces/<ns>/persistentvolumeclaims/<name>``
with a PVC object (or a ``Status`` 404), as the API server does. A test hands the driver
an in-cluster configuration pointing here: ``KUBERNETES_SERVICE_HOST``/``_PORT`` and a
service account directory holding ``token`` and ``ca.crt``. Every request is recorded.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.certs import make_tls_files

TOKEN = "test-service-account-token"
_PVC_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/persistentvolumeclaims/([^/?]+)$")


@dataclass
class KubeApi:
    """The fake's state: PVC labels by (namespace, name), and what was asked."""

    service_account_dir: Path
    host: str
    port: int
    pvcs: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    refuse: int | None = None  # answer every request with this status (403: RBAC missing)

    @property
    def environ(self) -> dict[str, str]:
        return {"KUBERNETES_SERVICE_HOST": self.host, "KUBERNETES_SERVICE_PORT": str(self.port)}

    def add_pvc(self, namespace: str, name: str, labels: dict[str, str] | None = None) -> None:
        self.pvcs[(namespace, name)] = dict(labels or {})


def _status(code: int, reason: str, message: str) -> dict[str, object]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}  # fmt: skip


def _handler(api: KubeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _send(self, code: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            api.requests.append(self.path)
            scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or token != TOKEN:  # the scheme is case-insensitive
                self._send(401, _status(401, "Unauthorized", "Unauthorized"))
                return
            if api.refuse is not None:
                self._send(
                    api.refuse, _status(api.refuse, "Forbidden", "persistentvolumeclaims is forbidden")
                )
                return
            match = _PVC_PATH.match(self.path.split("?", 1)[0])
            if match is None:
                self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
                return
            namespace, name = match.groups()
            labels = api.pvcs.get((namespace, name))
            if labels is None:
                message = f'persistentvolumeclaims "{name}" not found'
                self._send(404, _status(404, "NotFound", message))
                return
            self._send(
                200,
                {
                    "kind": "PersistentVolumeClaim",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": labels,
                        "uid": f"uid-{name}",
                    },
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    "status": {"phase": "Pending"},
                },
            )

    return Handler


@contextmanager
def kube_api(directory: Path) -> Iterator[KubeApi]:
    """Serve the fake API on 127.0.0.1 with a fresh CA; the service account files under ``directory``."""
    tls = make_tls_files(directory / "tls", ca_name="kubernetes-test-ca")
    account = directory / "serviceaccount"
    account.mkdir(parents=True, exist_ok=True)
    (account / "token").write_text(TOKEN)
    (account / "ca.crt").write_bytes(tls.ca_cert.read_bytes())
    (account / "namespace").write_text("piraeus-datastore")
    state = KubeApi(account, "127.0.0.1", 0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = server.server_address[1]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.server_cert, tls.server_key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="kube-api", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
