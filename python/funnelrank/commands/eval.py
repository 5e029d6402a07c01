"""`funnelrank eval`: placeholder until the evaluation harness lands (issue 2)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="evaluate retrieval stages on a BEIR dataset")
    p.add_argument("data_dir")
    p.set_defaults(func=lambda args: (_ for _ in ()).throw(NotImplementedError("eval")))
