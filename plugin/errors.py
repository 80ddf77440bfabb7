"""Typed errors of the core.

Every failure a caller must tell apart has its own class. The LINSTOR client raises
them from ret codes, the volume service and node operations raise them for their own
checks, and each front end maps them to its protocol in exactly one place (CSI: gRPC
status codes; Docker: an ``Err`` sentence). Messages are written for a person: they say
what is wrong and, where possible, what to do about it.
"""

from __future__ import annotations

from typing import Any


class VolumeError(Exception):
    """Base of every error the core raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class InvalidArgument(VolumeError):
    """The caller asked for something malformed; nothing was changed."""


class NotFound(VolumeError):
    """The volume, snapshot, node or pool does not exist."""


class AlreadyExists(VolumeError):
    """An object of that name exists with other parameters (size, class, source)."""


class NoSpace(VolumeError):
    """LINSTOR cannot place the volume: not enough nodes, pools or free space."""


class InUse(VolumeError):
    """The volume is in use (mounted or open) somewhere; ``details['nodes']`` says where."""


class NodeOffline(VolumeError):
    """A node involved in the operation is not connected to the controller."""


class Unavailable(VolumeError):
    """No LINSTOR controller answered; retrying later may succeed."""


class Busy(VolumeError):
    """Another operation on the same volume is under way (CSI: ABORTED)."""


class FailedPrecondition(VolumeError):
    """The request is valid but the volume's state does not allow it now."""


class OperationFailed(VolumeError):
    """A LINSTOR answer or a host command failed for a reason no other class covers."""
