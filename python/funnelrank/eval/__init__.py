"""Evaluation: BEIR loading, ranking metrics, significance (bootstrap intervals, paired tests), and the stage
harness behind `funnelrank eval`."""

from __future__ import annotations

from funnelrank.eval.beir import BeirDataset, DatasetFormatError, Document, Query, load_beir
from funnelrank.eval.harness import (
    StageContext,
    StageOutput,
    known_stages,
    register_stage,
    run_evaluation,
)
from funnelrank.eval.metrics import DEFAULT_METRICS, evaluate
from funnelrank.eval.significance import (
    PairedComparison,
    bootstrap_ci,
    compare_per_query,
    paired_randomization_test,
)

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "DatasetFormatError",
    "Document",
    "PairedComparison",
    "Query",
    "StageContext",
    "StageOutput",
    "bootstrap_ci",
    "compare_per_query",
    "evaluate",
    "known_stages",
    "load_beir",
    "paired_randomization_test",
    "register_stage",
    "run_evaluation",
]
