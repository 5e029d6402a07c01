"""Evaluation: BEIR loading, ranking metrics, and the stage harness behind `funnelrank eval`."""

from __future__ import annotations

from funnelrank.evaluation.beir import BeirDataset, DatasetFormatError, Document, Query, load_beir
from funnelrank.evaluation.harness import (
    StageContext,
    StageOutput,
    known_stages,
    register_stage,
    run_evaluation,
)
from funnelrank.evaluation.metrics import DEFAULT_METRICS, evaluate

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "DatasetFormatError",
    "Document",
    "Query",
    "StageContext",
    "StageOutput",
    "evaluate",
    "known_stages",
    "load_beir",
    "register_stage",
    "run_evaluation",
]
