"""A Hugging Face llama forward pass in numpy: reads a converted folder the way transformers/vLLM would (HF's
rotate-half RoPE, grouped-query attention, tied embeddings), so a test can check the conversion without PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class NumpyLlama:
    """Greedy decoding with a full recompute per token (fine for a few tokens of a 135M model)."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file

        self.cfg = json.loads((folder / "config.json").read_text())
        self.w = {k: v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}

    def _norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.cfg["rms_norm_eps"]) * weight

    def _rope(self, x: np.ndarray) -> np.ndarray:
        seq, _, dim = x.shape
        inv = self.cfg["rope_theta"] ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
        freqs = np.outer(np.arange(seq), inv)
        cos = np.cos(np.concatenate([freqs, freqs], -1))[:, None, :].astype(np.float32)
        sin = np.sin(np.concatenate([freqs, freqs], -1))[:, None, :].astype(np.float32)
        half = dim // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def logits(self, ids: list[int]) -> np.ndarray:
        """Logits of every position."""
        cfg, w = self.cfg, self.w
        heads, kv, dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        x = w["model.embed_tokens.weight"][ids]
        seq = len(ids)
        mask = np.triu(np.full((seq, seq), -np.inf, dtype=np.float32), 1)
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self._norm(x, w[p + "input_layernorm.weight"])
            q = self._rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(seq, heads, dim))
            k = self._rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(seq, kv, dim))
            v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(seq, kv, dim)
            k, v = np.repeat(k, heads // kv, axis=1), np.repeat(v, heads // kv, axis=1)
            scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(dim) + mask
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attn = np.einsum("hqk,khd->qhd", scores / scores.sum(-1, keepdims=True), v).reshape(seq, heads * dim)
            x = x + attn @ w[p + "self_attn.o_proj.weight"].T
            h = self._norm(x, w[p + "post_attention_layernorm.weight"])
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            up = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "mlp.down_proj.weight"].T
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
        return self._norm(x, w["model.norm.weight"]) @ head.T

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], list[float]]:
        """n greedy tokens and the log-probability of each."""
        ids, out, logprobs = list(ids), [], []
        for _ in range(n):
            last = self.logits(ids)[-1].astype(np.float64)
            logp = last - last.max() - np.log(np.exp(last - last.max()).sum())
            token = int(np.argmax(last))
            ids.append(token)
            out.append(token)
            logprobs.append(float(logp[token]))
        return out, logprobs
