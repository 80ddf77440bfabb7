"""Where the Docker plugin's settings come from, beside the core's connection settings.

The config file is the one LINBIT's Docker plugins read, so their installations carry
over: its ``[global]`` section names the controllers and TLS files, and every other key
is a ``docker volume create -o`` default. The same defaults can come from the
environment (``LS_DOCKER_DEFAULT_FS=xfs``), which is how ``docker plugin set`` reaches a
managed plugin. The core reads both through :func:`plugin.config.load_config`; only the
names are Docker's, so they live here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from plugin.config import Config, load_config

DEFAULT_CONFIG_FILE = "/etc/linstor/docker-volume.conf"
#: ``-o`` option defaults from the environment: LS_DOCKER_DEFAULT_FS=xfs -> {"fs": "xfs"}.
DEFAULTS_ENV_PREFIX = "LS_DOCKER_DEFAULT_"


def load_docker_config(
    overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] = os.environ,
    config_file: str | None = DEFAULT_CONFIG_FILE,
) -> Config:
    """The core's :func:`~plugin.config.load_config` with Docker's config file and defaults prefix."""
    return load_config(overrides, env=env, config_file=config_file, defaults_env_prefix=DEFAULTS_ENV_PREFIX)
