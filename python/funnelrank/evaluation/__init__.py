"""Evaluation: BEIR loading, ranking metrics, and the stage harness behind `funnelrank eval`."""
