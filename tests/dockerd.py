"""Kept for existing imports: the Docker helpers live in :mod:`testkit.dockerd`."""

from testkit.dockerd import DOCKER_CLIS, DockerDaemon, PluginProcess, dockerd_available

__all__ = ["DOCKER_CLIS", "DockerDaemon", "PluginProcess", "dockerd_available"]
