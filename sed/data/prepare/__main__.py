"""`python -m sed.data.prepare`: runs the CLI (sed.data.prepare.cli)."""

from sed.data.prepare.cli import main

raise SystemExit(main())
