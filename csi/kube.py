"""The one Kubernetes API call of the driver: a PVC's consistency-group label.

With ``--enable-consistency-groups`` the controller reads the PVC a CreateVolume is for
(the provisioner's ``--extra-create-metadata`` names it) and, when it carries
``linstor.csi.linbit.com/consistency-group``, makes the volume a member of that group, as
LINBIT's driver does. The official client reads the pod's in-cluster configuration: the API
server from ``KUBERNETES_SERVICE_HOST``/``_PORT``, the service account's token and CA from
``/var/run/secrets/kubernetes.io/serviceaccount``. The driver's service account needs
``get`` on ``persistentvolumeclaims``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from kubernetes import client as kube
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader

from plugin.errors import FailedPrecondition, InvalidArgument, Unavailable
from plugin.volumes.consistency_groups import GROUP_LABEL

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster_configuration(
    service_account_dir: str = SERVICE_ACCOUNT_DIR, environ: Mapping[str, str] | None = None
) -> kube.Configuration:
    """The pod's API server and credentials; InvalidArgument saying what is missing outside a pod."""
    configuration = kube.Configuration()
    loader = InClusterConfigLoader(
        token_filename=os.path.join(service_account_dir, "token"),
        cert_filename=os.path.join(service_account_dir, "ca.crt"),
        environ=dict(os.environ if environ is None else environ),
    )
    try:
        loader.load_and_set(configuration)
    except ConfigException as exc:
        raise InvalidArgument(f"no in-cluster Kubernetes configuration: {exc}") from None
    return configuration


class PvcGroups:
    """``(namespace, PVC name) -> consistency-group label`` over the Kubernetes API."""

    def __init__(self, configuration: kube.Configuration, timeout: float = 10.0) -> None:
        self._api = kube.CoreV1Api(kube.ApiClient(configuration))
        self._timeout = timeout

    def __call__(self, namespace: str, name: str) -> str | None:
        where = f"PVC {namespace}/{name}"
        try:
            pvc = self._api.read_namespaced_persistent_volume_claim(
                name, namespace, _request_timeout=self._timeout
            )
        except kube.ApiException as exc:
            if exc.status in (401, 403):
                raise FailedPrecondition(
                    f"cannot read {where} for its consistency-group label: the Kubernetes API refused "
                    f"({exc.status} {exc.reason}); grant the driver's service account get on "
                    "persistentvolumeclaims"
                ) from None
            if exc.status == 404:
                raise FailedPrecondition(f"{where} does not exist; it cannot be provisioned") from None
            raise Unavailable(
                f"cannot read {where} for its consistency-group label: the Kubernetes API answered "
                f"{exc.status} {exc.reason}"
            ) from None
        except Exception as exc:  # urllib3 connection and TLS errors: the API is not reachable
            raise Unavailable(
                f"cannot read {where} for its consistency-group label: the Kubernetes API is not "
                f"reachable ({type(exc).__name__}: {exc})"
            ) from None
        labels = (pvc.metadata.labels if pvc.metadata else None) or {}
        return labels.get(GROUP_LABEL) or None
