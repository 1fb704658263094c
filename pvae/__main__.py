"""``python -m pvae``: the ``pvae`` command, for launchers that run modules (``torchrun -m pvae``)."""

import sys

from pvae.cli import main

sys.exit(main())
