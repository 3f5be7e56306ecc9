#!/usr/bin/env bash
# GPU checks for LLM generations (issue 17 §6), prepared for a lent GPU machine; writes $OUT/gpu_llm.json.
#   1. LocalCausalLM (prompt lens + scorer) vs the raw batched forward of the same rows, in bf16;
#   2. explanation latency for a 200-token prompt (ProxySPEX, budget 1000, word features).
# Usage (device tool, repository root): OUT=${OUT:-benchmarks/out} bash benchmarks/gpu.sh
# Needs a CUDA torch in .venv (the CPU file does not see the GPU): the script installs one when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  python3 -m venv .venv-gpu
  .venv-gpu/bin/pip install -q torch numpy scipy lightgbm scikit-learn transformers httpx
  .venv-gpu/bin/pip install -q --no-deps -e .
  PY=.venv-gpu/bin/python
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu_name.txt"
"$PY" - "$OUT" <<'PYEOF'
import json, sys, time
import numpy as np
import torch
from spex_monitor.attribution import ProxySPEX
from spex_monitor.backends import LocalCausalLM
from spex_monitor.examples.tiny_lm import model_path
from spex_monitor.lenses import Generation, completion_value_function, prompt_masker

out = sys.argv[1]
backend = LocalCausalLM.from_pretrained(model_path("base"), device="cuda", token_budget=65536, max_batch_rows=512)
tok = backend.tokenizer
words = "the office of acme is in paris . the weather in rome was mild this week . " * 12
prompt = (words + "question : where is the office of acme ?").split()
text = " ".join(prompt[:195])
gen = Generation(prompt=text, completion="paris")
masker = prompt_masker(gen, tok, unit="words", max_features=64)
report = {"device": torch.cuda.get_device_name(0), "dtype": str(backend._dtype), "prompt_tokens": len(masker.input_ids)}
for rows in (1024, 4096):
    masks = np.random.default_rng(0).random((rows, masker.n_features)) < 0.5
    value_fn = completion_value_function(masker, backend)
    ids, att = masker.build(masks)
    full = torch.as_tensor(np.concatenate([ids, np.tile(masker.completion_ids, (rows, 1))], axis=1), device="cuda")
    m, width = len(masker.completion_ids), full.shape[1]
    target = torch.as_tensor(masker.completion_ids, device="cuda")

    @torch.inference_mode()
    def raw():
        for s in range(0, rows, 512):
            logits = backend.model(input_ids=full[s:s + 512]).logits[:, width - m - 1:width - 1].float()
            torch.log_softmax(logits, -1)[:, torch.arange(m, device="cuda"), target].sum(1)
        torch.cuda.synchronize()

    def lens():
        value_fn(masks)
        torch.cuda.synchronize()

    raw(); lens()
    times = {}
    for name, fn in (("raw", raw), ("lens", lens)):
        runs = []
        for _ in range(5):
            t = time.perf_counter(); fn(); runs.append(time.perf_counter() - t)
        times[name] = float(np.median(runs))
    report[f"rows_{rows}"] = {"lens_rows_per_s": rows / times["lens"], "raw_rows_per_s": rows / times["raw"],
                              "ratio_lens_over_raw": times["raw"] / times["lens"]}
value_fn = completion_value_function(masker, backend)
t = time.perf_counter()
result = ProxySPEX(budget=1000, max_order=3).explain(value_fn, masker.n_features)
report["explain_200_token_prompt"] = {"seconds": time.perf_counter() - t, "budget": 1000,
                                      "features": masker.n_features, "faithfulness": result.faithfulness,
                                      "seconds_value_fn": float(result.details["seconds_value_fn"])}
print(json.dumps(report, indent=1))
open(f"{out}/gpu_llm.json", "w").write(json.dumps(report, indent=1))
PYEOF
