"""The one place where failures become the ``Err`` sentence Docker prints.

Docker shows ``Err`` verbatim after its own prefix ("create v1: ...", "error while
mounting volume ...: ..."), so the sentence must say what went wrong and what to do,
never carry a traceback or a Python class name. Core errors already carry a message
written for a person; this module adds the hint that fits the Docker user.
"""

from __future__ import annotations

import re

from plugin import errors

_HINTS: dict[type[errors.VolumeError], str] = {
    errors.InvalidArgument: "",
    errors.NotFound: "",
    errors.AlreadyExists: (
        "a volume of that name exists with other options; remove it first or use another name"
    ),
    errors.NoSpace: "add storage or nodes to LINSTOR, or ask for fewer replicas or a smaller size",
    errors.InUse: "stop the containers using it first",
    errors.NodeOffline: "bring the node back online in LINSTOR and retry",
    errors.Unavailable: (
        "check that the LINSTOR controller is running and reachable "
        "(LS_CONTROLLERS or controllers= in /etc/linstor/docker-volume.conf), then retry"
    ),
    errors.Busy: "another operation on this volume is under way; retry in a moment",
    errors.FailedPrecondition: "",
    errors.OperationFailed: "see the linstor-docker-volume log for details",
}

INTERNAL_ERROR = (
    "internal error in the LINSTOR volume plugin; nothing was changed on purpose, "
    "see the linstor-docker-volume log for details"
)


# The core's generic closing advice ("... . Check LS_CONTROLLERS and ..."): the Docker hint
# says the same for a Docker user, naming the config file too, so only one of them is kept.
_CORE_ADVICE = re.compile(r"\.\s+Check [^.]*$")


class RequestError(errors.InvalidArgument):
    """The request body from Docker is malformed (missing Name, not JSON)."""


def error_code(exc: BaseException) -> str:
    """Short code for logs and metrics: the error class name."""
    return type(exc).__name__


def docker_error_message(exc: BaseException) -> str:
    """Turn any exception into one sentence for the ``Err`` field."""
    if not isinstance(exc, errors.VolumeError):
        return INTERNAL_ERROR
    message = (exc.message or "").strip().rstrip(".")
    if not message:
        message = "the volume operation failed"
    hint = ""
    for cls in type(exc).__mro__:
        if cls in _HINTS:
            hint = _HINTS[cls]
            break
    if hint and _CORE_ADVICE.search(message):
        return f"{_CORE_ADVICE.sub('', message)}: {hint}"
    # A message that already carries advice ("...; unmount it there first") is left alone.
    if hint and ";" not in message and hint.lower() not in message.lower():
        return f"{message}: {hint}"
    return message
