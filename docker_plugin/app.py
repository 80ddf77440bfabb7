"""The Docker volume plugin protocol as a small WSGI application.

Docker POSTs JSON to ``/<Method>`` without a Content-Type (and with a trailing newline),
an empty body for ``Plugin.Activate``, and ``"Opts": null`` for implicit creation. Every
answer is HTTP 200 with an ``Err`` field: empty on success, one sentence a person can
act on otherwise (Docker prints it after "create NAME:" and the like; a non-200 status
would only add the method name in front). Each handler is a few lines: validate, call the
driver, shape the answer. Failures are mapped in :func:`docker_plugin.errors.docker_error_message`
and nothing, not even an unexpected exception, returns a traceback. Bodies are bounded
(:data:`MAX_BODY_BYTES`; Docker's are a few KiB): a larger one is refused unread.

The protocol is a table of POST paths and one GET (``/health``), so a web framework adds
nothing but start-up time: importing Flask took about half of the plugin's start to ready.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from docker_plugin.driver import DockerVolumeDriver, validate_name
from docker_plugin.errors import RequestError, docker_error_message
from plugin import errors
from plugin.observability import observe_request

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.docker.plugins.v1.2+json"
MAX_BODY_BYTES = 64 * 1024
FRONTEND = "docker"

Handler = Callable[[dict[str, Any]], dict[str, Any]]
StartResponse = Callable[..., Any]
Reply = tuple[int, Mapping[str, Any]]


def _content_length(environ: Mapping[str, Any]) -> int | None:
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or ""))
    except ValueError:
        return None


def read_body(environ: Mapping[str, Any]) -> bytes:
    """The request body, refused unread when it is over :data:`MAX_BODY_BYTES`.

    Without a length (and without a server that ends the stream itself) there is no body
    to read, as the HTTP rules say; reading on would wait for a client that sent nothing.
    """
    length = _content_length(environ)
    if (length or 0) > MAX_BODY_BYTES:
        raise RequestError(too_large_message())
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        raw = stream.read(MAX_BODY_BYTES + 1)
    elif length is None:
        raw = b""
    else:
        raw = stream.read(length)
    if len(raw) > MAX_BODY_BYTES:
        raise RequestError(too_large_message())
    return bytes(raw)


def too_large_message() -> str:
    return (
        f"the request body is larger than {MAX_BODY_BYTES // 1024} KiB and was not read; "
        "Docker's volume requests are a few KiB"
    )


def decode_body(raw: bytes) -> dict[str, Any]:
    """JSON object from the body whatever the Content-Type; empty means ``{}``."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        raise RequestError("the request body is not valid JSON") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    return body


def _options(body: dict[str, Any]) -> dict[str, str] | None:
    """``Opts`` is an object of strings, or null when Docker creates a volume implicitly."""
    opts = body.get("Opts")
    if opts is None:
        return None
    if not isinstance(opts, dict):
        raise RequestError("Opts must be an object of option names to values")
    out: dict[str, str] = {}
    for key, value in opts.items():
        if not isinstance(value, str | int | float | bool):
            raise errors.InvalidArgument(f"option {key} must have a plain value")
        out[str(key)] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _mount_id(body: dict[str, Any]) -> str:
    mount_id = body.get("ID", "")
    if mount_id is None:
        return ""
    if not isinstance(mount_id, str):
        raise RequestError("ID must be a string")
    return mount_id


class PluginApp:
    """POST ``/<Method>`` to its protocol handler, GET ``/health``; everything else is an ``Err``."""

    def __init__(self, health: Callable[[], Reply]) -> None:
        self._posts: dict[str, Callable[[Mapping[str, Any]], Reply]] = {}
        self._health = health

    def post(self, method: str, view: Callable[[Mapping[str, Any]], Reply]) -> None:
        self._posts[f"/{method}"] = view

    def _route(self, environ: Mapping[str, Any], path: str) -> Reply:
        verb = environ.get("REQUEST_METHOD", "GET").upper()
        if path == "/health":
            if verb in ("GET", "HEAD"):
                return self._health()
            return 405, {"Err": f"{path} must be called with GET"}
        view = self._posts.get(path)
        if view is None:
            return 404, {"Err": f"unknown call {path}: this plugin implements VolumeDriver"}
        if verb != "POST":
            return 405, {"Err": f"{path} must be called with POST"}
        return view(environ)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # WSGI hands the path over as latin-1 of the raw bytes; clients send UTF-8.
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", errors="replace") or "/"
        try:
            status, payload = self._route(environ, path)
        except Exception as exc:
            log.exception("unexpected failure serving %s", path)
            status, payload = 500, {"Err": docker_error_message(exc)}
        body = (json.dumps(payload) + "\n").encode()
        headers = [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))]
        if status == 405:
            headers.append(("Allow", "GET, HEAD" if path == "/health" else "POST"))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [b"" if environ.get("REQUEST_METHOD", "").upper() == "HEAD" else body]


def create_app(driver: DockerVolumeDriver, health: Callable[[], dict[str, Any]] | None = None) -> PluginApp:
    """Build the app; ``health`` adds details (e.g. controller reachability) to ``/health``."""

    def health_view() -> Reply:
        details: dict[str, Any] = {"status": "ok", "mounted_volumes": driver.store.mounted_count()}
        if health is not None:
            try:
                details.update(health())
            except Exception as exc:  # health must answer even when its probe breaks
                details["probe_error"] = docker_error_message(exc)
        return 200, details

    app = PluginApp(health_view)

    def endpoint(method: str, error_fields: Mapping[str, Any] | None = None) -> Callable[[Handler], Handler]:
        """Register one protocol method with body decoding, logging and the single error mapping."""

        def register(fn: Handler) -> Handler:
            def view(environ: Mapping[str, Any]) -> Reply:
                name: str | None = None
                try:
                    body = decode_body(read_body(environ))
                    if isinstance(body.get("Name"), str):
                        name = body["Name"]
                    with observe_request(log, FRONTEND, method, volume=name, id=body.get("ID")):
                        result = fn(body)
                except Exception as exc:
                    if not isinstance(exc, errors.VolumeError):
                        log.exception("unexpected failure in %s for volume %s", method, name)
                    return 200, {**(error_fields or {}), "Err": docker_error_message(exc)}
                return 200, {**result, "Err": ""}

            app.post(method, view)
            return fn

        return register

    @endpoint("Plugin.Activate")
    def activate(body: dict[str, Any]) -> dict[str, Any]:
        return {"Implements": ["VolumeDriver"]}

    @endpoint("VolumeDriver.Capabilities")
    def capabilities(body: dict[str, Any]) -> dict[str, Any]:
        return {"Capabilities": {"Scope": "global"}}

    @endpoint("VolumeDriver.Create")
    def create(body: dict[str, Any]) -> dict[str, Any]:
        driver.create(validate_name(body.get("Name")), _options(body))
        return {}

    @endpoint("VolumeDriver.Remove")
    def remove(body: dict[str, Any]) -> dict[str, Any]:
        driver.remove(validate_name(body.get("Name")))
        return {}

    @endpoint("VolumeDriver.Mount", {"Mountpoint": ""})
    def mount(body: dict[str, Any]) -> dict[str, Any]:
        return {"Mountpoint": driver.mount(validate_name(body.get("Name")), _mount_id(body))}

    @endpoint("VolumeDriver.Unmount")
    def unmount(body: dict[str, Any]) -> dict[str, Any]:
        driver.unmount(validate_name(body.get("Name")), _mount_id(body))
        return {}

    @endpoint("VolumeDriver.Path", {"Mountpoint": ""})
    def path(body: dict[str, Any]) -> dict[str, Any]:
        return {"Mountpoint": driver.path(validate_name(body.get("Name")))}

    @endpoint("VolumeDriver.Get")
    def get(body: dict[str, Any]) -> dict[str, Any]:
        return {"Volume": driver.get(validate_name(body.get("Name"))).to_docker()}

    @endpoint("VolumeDriver.List", {"Volumes": []})
    def list_volumes(body: dict[str, Any]) -> dict[str, Any]:
        return {"Volumes": [v.to_docker() for v in driver.list()]}

    return app
