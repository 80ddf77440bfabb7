"""Whether a LINSTOR controller answers: the readiness fact both daemons report.

Kept apart from the volume service so a daemon can answer its readiness probe as soon as
its socket listens, before the rest of the core is imported and built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugin.errors import Unavailable, VolumeError

if TYPE_CHECKING:
    from plugin.linstor.client import LinstorClient


def controller_reachable(client: LinstorClient) -> bool:
    """One cheap read; any answer, even an odd one, means a controller is there."""
    try:
        client.controller_version()
    except Unavailable:
        return False
    except VolumeError:
        return True  # it answered, even if oddly
    return True
