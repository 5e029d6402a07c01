"""CLI sub-commands, one module each (see funnelrank.cli.COMMAND_MODULES)."""
