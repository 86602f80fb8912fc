"""`python -m easyphoto ...` (see easyphoto.cli)."""

from easyphoto.cli import main

raise SystemExit(main())
