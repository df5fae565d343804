"""``python -m ensemble`` is the ``ensemble`` command."""
import sys

from ensemble.cli import main

sys.exit(main())
