"""Remotes: ``/v1/remotes`` (S3 and LINSTOR targets of backups), as the controller keeps them.

Access and secret keys are stored in the state file and never returned or logged; a list
shows what the controller's shows (``remote_name``, ``endpoint``, ``bucket``, ``region`` and
``use_path_style`` for S3, ``remote_name`` and ``url`` for LINSTOR).
"""

from __future__ import annotations

import re
import uuid as uuidlib
from typing import Any

from emulator import backups, body, names
from emulator import retcodes as rc
from emulator.core import Emulator
from emulator.remotes import (
    FAIL_EXISTS_REMOTE,
    FAIL_INVLD_BACKUP_CONFIG,
    FAIL_INVLD_CONF,
    FAIL_INVLD_REMOTE_NAME,
    MASK_REMOTE,
    backup_error,
    describe,
    find,
    name_problem,
    unlocked,
)
from emulator.routing import Json, Request
from emulator.s3_target import S3Error, S3Target

S3_REMOTE = body.Obj(
    {
        "remote_name": body.STR,
        "endpoint": body.STR,
        "bucket": body.STR,
        "region": body.STR,
        "access_key": body.STR,
        "secret_key": body.STR,
        "use_path_style": body.BOOL,
    }
)
LINSTOR_REMOTE = body.Obj(
    {"remote_name": body.STR, "url": body.STR, "passphrase": body.STR, "cluster_id": body.STR}
)
_URL = re.compile(r"(https?://)?([^:/]+)(:[0-9]+)?")
DEFAULT_HTTP_PORT = 3370
DEFAULT_HTTPS_PORT = 3371


def _missing(data: dict[str, Any], wanted: list[str]) -> None:
    missing = [k for k in wanted if not data.get(k)]
    if missing:
        plural = "parameter is" if len(missing) == 1 else "parameters are"
        raise rc.ApiFailure(
            backup_error(
                FAIL_INVLD_BACKUP_CONFIG,
                f"The remote could not be created because the following required {plural} missing: "
                f"[{', '.join(missing)}]",
            )
        )


def _name_free(emu: Emulator, name: str) -> None:
    rc.refuse_invalid(name_problem(name), FAIL_INVLD_REMOTE_NAME)
    if names.key(name) in emu.state.remotes:
        raise rc.ApiFailure(
            rc.error(
                FAIL_EXISTS_REMOTE,
                f"A remote with the name '{name}' already exists. Please use a different name or try to "
                "modify the remote instead.",
            )
        )


def _check_s3(emu: Emulator, remote: dict[str, Any], what: str) -> None:
    """LINSTOR lists the bucket before it keeps a remote: wrong endpoint, keys or bucket fail here."""
    try:
        target = S3Target(remote)
        unlocked(emu, target.check)
    except S3Error as exc:
        raise rc.ApiFailure(
            backup_error(
                rc.FAIL_UNKNOWN_ERROR,
                f"The remote could not be reached with the given parameters and therefore wasn't {what}. "
                "Please check for spelling errors and that you have the correct access-key and secret-key.",
                cause=str(exc),
            )
        ) from None


def s3_view(remote: dict[str, Any]) -> dict[str, Any]:
    return {
        "remote_name": remote["name"],
        "endpoint": remote["endpoint"],
        "bucket": remote["bucket"],
        "region": remote["region"],
        "use_path_style": bool(remote.get("use_path_style")),
    }


def linstor_view(remote: dict[str, Any]) -> dict[str, Any]:
    return {"remote_name": remote["name"], "url": remote["url"]}


def _visible(emu: Emulator, kind: str) -> list[dict[str, Any]]:
    return [
        r
        for _, r in sorted(emu.state.remotes.items())
        if r["type"] == kind and "DELETE" not in r.get("flags", [])
    ]


# ---------------------------------------------------------------------- lists


def list_all(emu: Emulator, req: Request) -> Json:
    return Json(
        {
            "s3_remotes": [s3_view(r) for r in _visible(emu, "S3")],
            "linstor_remotes": [linstor_view(r) for r in _visible(emu, "LINSTOR")],
            "ebs_remotes": [],
        }
    )


def list_s3(emu: Emulator, req: Request) -> Json:
    return Json([s3_view(r) for r in _visible(emu, "S3")])


def list_linstor(emu: Emulator, req: Request) -> Json:
    return Json([linstor_view(r) for r in _visible(emu, "LINSTOR")])


def list_ebs(emu: Emulator, req: Request) -> Json:
    return Json([])


def create_ebs(emu: Emulator, req: Request) -> list[rc.Entry]:
    raise rc.ApiFailure(
        rc.error(rc.FAIL_INVLD_REQUEST, "EBS remotes are not emulated; only S3 and LINSTOR remotes are.")
    )


# ---------------------------------------------------------------------- S3


def create_s3(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(S3_REMOTE)
    _missing(data, ["remote_name", "endpoint", "bucket", "region", "access_key", "secret_key"])
    name = data["remote_name"]
    _name_free(emu, name)
    remote = {
        "name": name,
        "type": "S3",
        "endpoint": data["endpoint"],
        "bucket": data["bucket"],
        "region": data["region"],
        "access_key": data["access_key"],
        "secret_key": data["secret_key"],
        "use_path_style": bool(data.get("use_path_style")),
        "flags": [],
    }
    _check_s3(emu, remote, "created")
    _name_free(emu, name)  # the lock was released for the check
    emu.state.remotes[names.key(name)] = remote
    return [rc.success(rc.CREATED | MASK_REMOTE, "Remote created", obj_refs={"RemoteName": name})]


def modify_s3(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(S3_REMOTE)
    remote = find(emu, req.params["remote"], "S3")
    # The controller's modify takes endpoint, bucket, region and the keys; not the path style.
    changed = dict(remote)
    for k in ("endpoint", "bucket", "region", "access_key", "secret_key"):
        if data.get(k):
            changed[k] = data[k]
    _check_s3(emu, changed, "modified")
    current = find(emu, req.params["remote"], "S3")
    current.update(changed)
    return [
        rc.success(
            rc.MODIFIED | MASK_REMOTE,
            f"{describe(remote['name'])} modified",
            obj_refs={"RemoteName": remote["name"]},
        )
    ]


# ---------------------------------------------------------------------- LINSTOR


def normalize_url(url: str) -> str:
    """``host`` -> ``http://host:3370``, ``https://host`` -> ``https://host:3371`` (controller defaults)."""
    m = _URL.search(url)
    if m is None:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_UNKNOWN_ERROR,
                f"Given URL '{url}' did not match expected pattern of {_URL.pattern}",
            )
        )
    scheme = m.group(1) or "http://"
    port = m.group(3) or f":{DEFAULT_HTTPS_PORT if scheme == 'https://' else DEFAULT_HTTP_PORT}"
    return f"{scheme}{m.group(2)}{port}"


def _cluster_id_arg(value: str | None) -> str:
    if not value:
        return ""
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise rc.ApiFailure(rc.error(FAIL_INVLD_CONF, "The given cluster id is not a valid UUID")) from None


def create_linstor(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(LINSTOR_REMOTE)
    _missing(data, ["remote_name", "url"])
    name = data["remote_name"]
    _name_free(emu, name)
    emu.state.remotes[names.key(name)] = {
        "name": name,
        "type": "LINSTOR",
        "url": normalize_url(data["url"]),
        "cluster_id": _cluster_id_arg(data.get("cluster_id")),
        "passphrase": data.get("passphrase") or "",
        "flags": [],
    }
    return [rc.success(rc.CREATED, "Linstor remote successfully created", obj_refs={"RemoteName": name})]


def modify_linstor(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(LINSTOR_REMOTE)
    remote = find(emu, req.params["remote"], "LINSTOR")
    url = normalize_url(data["url"]) if data.get("url") else remote["url"]
    cid = _cluster_id_arg(data.get("cluster_id")) if data.get("cluster_id") else remote.get("cluster_id", "")
    remote["url"], remote["cluster_id"] = url, cid
    if data.get("passphrase"):
        remote["passphrase"] = data["passphrase"]
    return [
        rc.success(
            rc.MODIFIED, "Linstor remote successfully updated", obj_refs={"RemoteName": remote["name"]}
        )
    ]


# ---------------------------------------------------------------------- delete


def delete_remote(emu: Emulator, req: Request) -> list[rc.Entry]:
    name = req.q_first("remote_name") or ""
    rc.refuse_invalid(name_problem(name), FAIL_INVLD_REMOTE_NAME)
    key = names.key(name)
    remote = emu.state.remotes.get(key)
    if remote is None or "DELETE" in remote.get("flags", []):
        return [rc.warn(rc.WARN_NOT_FOUND, f"{describe(name)} not found.")]
    if backups.engine_of(emu).running(key):
        if "MARK_DELETED" not in remote["flags"]:
            remote["flags"].append("MARK_DELETED")
        return [
            rc.success(
                rc.MODIFIED,
                f"{describe(remote['name'])} prepared for deletion. Waiting for ongoing shipments to "
                "complete or abort.",
            )
        ]
    del emu.state.remotes[key]
    return [rc.success(rc.DELETED, f"{describe(remote['name'])} marked for deletion.")]
