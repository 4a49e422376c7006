"""Merge the adapters into the base weights and write the served artifact: a GGUF for the same engine.

Only the adapted matrices change; every other tensor is copied byte for byte (Q4_1 stays the same bytes).

The adapted matrices cannot simply be quantised to Q4_1 again: the base weights already sit exactly on the Q4_1
grid, whose step (block range / 15, about 0.07 here) is some 50 times the LoRA update (rms about 0.0013), so
nearest rounding puts almost every weight back where it was. Measured on the worked example: the requantised
update keeps cos = 0.08 of the trained update's direction, i.e. the fine-tune is gone. So by default (quant
"F16") the adapted matrices are written in float16 (exact for Q4_1 base values, 1e-3 relative for the update);
with q and v adapted that is 60 of 272 tensors, 12.5 % of the parameters, and bench/finetune_bench.py measures
what it costs in served tokens/s. quant="same" writes the base's type anyway (an honest ablation: the task
metric of that artifact shows the loss), "Q8_0" is in between.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from services.finetune import model as M
from services.finetune.gguf_io import KIND_OF, GgufModel, gguf_layer_weight, write_merged


def merged_tensors(base: GgufModel, lora: M.Params, scale: float) -> dict[str, np.ndarray]:
    """GGUF tensor name -> merged float32 matrix in the GGUF's layout ([out, in], llama.cpp's q/k row order)."""
    out: dict[str, np.ndarray] = {}
    for name, stacked in M.merge(base.weights, lora, scale).items():
        for layer in range(base.config.layers):
            out[f"blk.{layer}.{KIND_OF[name]}.weight"] = gguf_layer_weight(base.config, name, stacked[layer])
    return out


def export_gguf(
    base: GgufModel, lora: M.Params, scale: float, target: Path, lineage: dict[str, Any], quant: str = "F16"
) -> dict[str, Any]:
    """Write the merged GGUF; lineage (run id, dataset digest ...) goes into `llmops.*` metadata keys."""
    replaced = merged_tensors(base, lora, scale)
    metadata = {f"llmops.{k}": str(v) for k, v in lineage.items()}
    types = write_merged(base.path, target, replaced, metadata, None if quant == "same" else quant)
    return {"path": str(target), "requantised": sorted({types[n] for n in replaced}), "tensors_changed": len(replaced)}
