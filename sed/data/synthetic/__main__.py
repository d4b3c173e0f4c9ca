"""`python -m sed.data.synthetic`: runs the CLI (sed.data.synthetic.cli)."""

import sys

from sed.data.synthetic.cli import main

sys.exit(main())
