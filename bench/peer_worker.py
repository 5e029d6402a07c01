"""A sentence-transformers CrossEncoder peer in its own process (and its own virtual environment), for
bench_stage2.py: its ONNX backends need `optimum`, whose transformers pin clashes with this project's.

    PEER_PYTHON bench/peer_worker.py HF_DIR WORK_DIR BACKEND MAX_LENGTH THREADS

BACKEND: ``torch``, ``onnx`` (its ONNX export of the checkpoint) or ``onnx-int8`` (its dynamic int8 export for
AVX-512 VNNI, ``export_dynamic_quantized_onnx_model(model, "avx512_vnni", ...)``). Exports are written under
WORK_DIR (a copy of the checkpoint). Then, one JSON line per request on stdin, ``{"query", "passages"}``, it
answers ``{"seconds", "logits"}``: the wall time of ``predict`` alone (its default batch size, no activation).
Imports nothing from funnelrank.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path


def load(hf_dir: Path, work: Path, backend: str, max_length: int):  # type: ignore[no-untyped-def]
    from sentence_transformers import CrossEncoder

    if backend == "torch":
        return CrossEncoder(str(hf_dir), max_length=max_length, device="cpu")
    if not (work / "config.json").is_file():
        shutil.copytree(hf_dir, work, dirs_exist_ok=True)
    if not (work / "onnx" / "model.onnx").is_file():
        CrossEncoder(str(work), backend="onnx", max_length=max_length, device="cpu").save_pretrained(str(work))
    if backend == "onnx":
        return CrossEncoder(str(work), backend="onnx", max_length=max_length, device="cpu")
    if backend == "onnx-int8":
        name = "model_qint8_avx512_vnni.onnx"
        if not (work / "onnx" / name).is_file():
            from sentence_transformers import export_dynamic_quantized_onnx_model

            model = CrossEncoder(str(work), backend="onnx", max_length=max_length, device="cpu")
            export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(work))
        return CrossEncoder(str(work), backend="onnx", max_length=max_length, device="cpu",
                            model_kwargs={"file_name": f"onnx/{name}"})
    raise ValueError(f"unknown backend {backend!r}")


def main() -> int:
    hf_dir, work, backend, max_length, threads = sys.argv[1:6]
    import torch

    torch.set_num_threads(int(threads))
    model = load(Path(hf_dir), Path(work), backend, int(max_length))
    identity = torch.nn.Identity()
    print(json.dumps({"ready": backend}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pairs = [(req["query"], p) for p in req["passages"]]
        t = time.perf_counter()
        out = model.predict(pairs, show_progress_bar=False, activation_fn=identity)
        seconds = time.perf_counter() - t
        print(json.dumps({"seconds": seconds, "logits": [float(x) for x in out]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
