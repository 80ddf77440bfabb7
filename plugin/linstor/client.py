"""The plugin's only way to talk to LINSTOR: a thin, typed client over ``requests``.

Every LINSTOR REST call of the project is one small method of :class:`LinstorClient`,
grouped by what it concerns (:mod:`~plugin.linstor.cluster`, :mod:`~plugin.linstor.resources`,
:mod:`~plugin.linstor.snapshots`), over one :class:`~plugin.linstor.transport.Transport`
(session, failover, safe retries, TLS, typed errors). Answers are typed records
(:mod:`plugin.linstor.records`): nothing outside this package reads LINSTOR's JSON.
"""

from __future__ import annotations

from plugin.config import Config
from plugin.linstor import features
from plugin.linstor.cluster import ClusterEndpoints
from plugin.linstor.resources import ResourceEndpoints
from plugin.linstor.snapshots import SnapshotEndpoints
from plugin.linstor.transport import POOL_SIZE


class LinstorClient(ClusterEndpoints, ResourceEndpoints, SnapshotEndpoints):
    """Typed access to the LINSTOR controller REST API (v1). Safe for concurrent use."""

    def __init__(
        self,
        config: Config,
        *,
        retries: int = 2,
        backoff: float = 0.1,
        pool_size: int = POOL_SIZE,
    ) -> None:
        super().__init__(config, retries=retries, backoff=backoff, pool_size=pool_size)
        #: The controller's version, read once, for the request fields older controllers lack.
        self.features = features.ControllerFeatures(self.controller_version)
