"""Kept for existing imports: the Docker helpers live in :mod:`testkit.dockerd`."""

from testkit.dockerd import DockerDaemon, PluginProcess, dockerd_available

__all__ = ["DockerDaemon", "PluginProcess", "dockerd_available"]
