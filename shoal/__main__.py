"""``python -m shoal`` runs the ``shoal`` command."""

from shoal.cli import main

raise SystemExit(main())
