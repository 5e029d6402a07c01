"""Developer tools run as modules (python -m funnelrank.tools.<name>); never imported on the query path."""
