"""``python -m docker_plugin``: the same daemon as the ``linstor-docker-volume`` script."""

import sys

from docker_plugin.cli import main

sys.exit(main())
