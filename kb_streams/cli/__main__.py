"""``python -m kb_streams.cli`` runs the ``kb-streams`` command."""

import sys

from . import main

sys.exit(main())
