"""CLI sub-commands, one module each (see funnelrank.cli.main.COMMAND_MODULES)."""
