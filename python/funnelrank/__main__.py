"""`python -m funnelrank` is the same as the `funnelrank` command."""

from funnelrank.cli.main import main

raise SystemExit(main())
