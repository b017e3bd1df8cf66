"""`python -m reportflow.cli`: the `reportflow` command."""

import sys

from reportflow.cli import main

sys.exit(main())
