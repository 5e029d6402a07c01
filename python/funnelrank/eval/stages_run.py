"""The `run` stage: the dataset's own first-stage run (``run.bm25.tsv``, or the file ``funnelrank eval
--run-file`` names, e.g. a reranked run from ``funnelrank rerank-run``) scored as given.

It retrieves nothing, so it has no throughput (``qps`` is null). It is also the default candidate source
for reranking when the dataset ships a run (see :meth:`StageContext.rerank_source`).
"""

from __future__ import annotations

from funnelrank.eval.beir import RUN_FILE
from funnelrank.eval.harness import StageContext, StageOutput, register_stage


@register_stage("run", help=f"score the dataset's {RUN_FILE} (or --run-file) as given (no retrieval)")
def run_stage(ctx: StageContext) -> StageOutput:
    """The judged queries' rankings from the dataset's run file, in its rank order."""
    run = ctx.dataset.run
    if run is None:
        raise ValueError(f'stage "run" needs {ctx.dataset.root / RUN_FILE}, which does not exist')
    rankings = {qid: list(run.get(qid, [])) for qid in ctx.dataset.queries}
    source = RUN_FILE if ctx.dataset.run_file is None else str(ctx.dataset.run_file)
    return StageOutput(rankings=rankings, query_seconds=None, extra={"source": source})
