"""``python -m csi``: the same as the ``linstor-csi`` console script."""

import sys

from csi.cli import main

sys.exit(main())
