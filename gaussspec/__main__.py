"""``python -m gaussspec`` runs the command line."""

import sys

from gaussspec.cli import main

sys.exit(main())
