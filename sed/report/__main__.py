"""`python -m sed.report`: see sed.report.cli."""

import sys

from sed.report.cli import main

sys.exit(main())
