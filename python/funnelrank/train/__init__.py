"""Training tools for funnelrank's default cross-encoder (needs the `dev` extra: torch, transformers).

Nothing here is imported on the query path; inference uses the exported ONNX model only.
Run `python -m funnelrank.train --help`.
"""
