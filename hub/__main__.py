"""``python -m hub`` runs the ``leadhub`` command."""

from __future__ import annotations

import sys

from hub import main

sys.exit(main())
