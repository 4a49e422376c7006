"""SmolLM2 (a llama) forward pass in JAX, with LoRA adapters; small enough to read in one sitting.

Layout: every per-layer weight is stacked on a leading layer axis and the layers run under `jax.lax.scan`, so
XLA compiles one layer body instead of 30 (compilation stays a few seconds). Matrices are [in, out] (x @ W).
Attention is grouped-query (9 query heads share 3 key/value heads), RoPE is Hugging Face's rotate-half form on
un-permuted q/k rows (gguf_io.load un-permutes llama.cpp's order), the output head is the tied embedding.

LoRA (Hu et al. 2021): a frozen W plus scale * A @ B with A [in, r] random and B [r, out] zero, so training starts
exactly at the base model; only A and B get gradients. `merge` folds scale * A @ B into W for serving.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from services.finetune.gguf_io import LlamaConfig

Params = dict[str, Any]
ADAPTABLE = ("q", "k", "v", "o", "gate", "up", "down")


def to_device(weights: dict[str, Any]) -> Params:
    """numpy weights (gguf_io.load) as JAX arrays."""
    return jax.tree_util.tree_map(jnp.asarray, weights)


def rms_norm(x: jax.Array, weight: jax.Array, eps: float) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope_tables(seq: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    inv = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    freqs = np.outer(np.arange(seq), inv)
    angles = np.concatenate([freqs, freqs], -1)
    return jnp.asarray(np.cos(angles), jnp.float32), jnp.asarray(np.sin(angles), jnp.float32)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, T, heads, dim]; rotate the first half of each head against the second (HF llama)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


def init_lora(config: LlamaConfig, targets: tuple[str, ...], rank: int, key: jax.Array) -> Params:
    """A ~ U(-1/sqrt(in), 1/sqrt(in)) as PEFT does, B = 0: the adapted model starts as the base model."""
    shapes = {
        "q": (config.hidden, config.heads * config.head_dim),
        "k": (config.hidden, config.kv_heads * config.head_dim),
        "v": (config.hidden, config.kv_heads * config.head_dim),
        "o": (config.heads * config.head_dim, config.hidden),
        "gate": (config.hidden, config.intermediate),
        "up": (config.hidden, config.intermediate),
        "down": (config.intermediate, config.hidden),
    }
    lora: Params = {}
    for name, subkey in zip(targets, jax.random.split(key, len(targets)), strict=True):
        fan_in, fan_out = shapes[name]
        bound = 1.0 / np.sqrt(fan_in)
        a = jax.random.uniform(subkey, (config.layers, fan_in, rank), jnp.float32, -bound, bound)
        lora[name] = {"a": a, "b": jnp.zeros((config.layers, rank, fan_out), jnp.float32)}
    return lora


def _proj(h: jax.Array, layer: Params, lora: Params, name: str, scale: float) -> jax.Array:
    out = h @ layer[name]
    if name in lora:
        out = out + (h @ lora[name]["a"]) @ lora[name]["b"] * scale
    return out


def forward(params: Params, lora: Params, tokens: jax.Array, config: LlamaConfig, scale: float) -> jax.Array:
    """Logits [B, T, V] for tokens [B, T] (causal; right padding needs no mask beyond the causal one)."""
    return project(params, hidden_states(params, lora, tokens, config, scale))


def project(params: Params, hidden: jax.Array) -> jax.Array:
    """Hidden states (after the final norm) -> logits: the tied embedding, or lm_head when the GGUF has one."""
    head = params["lm_head"] if "lm_head" in params else params["embed"].T
    return hidden @ head


def hidden_states(params: Params, lora: Params, tokens: jax.Array, config: LlamaConfig, scale: float) -> jax.Array:
    """The last layer's normalised output [B, T, D]."""
    batch, seq = tokens.shape
    heads, kv, dim = config.heads, config.kv_heads, config.head_dim
    group = heads // kv
    cos, sin = rope_tables(seq, dim, config.rope_theta)
    causal = jnp.tril(jnp.ones((seq, seq), dtype=bool))
    x = params["embed"][tokens]

    def layer_step(x: jax.Array, inputs: tuple[Params, Params]) -> tuple[jax.Array, None]:
        layer, adapters = inputs
        h = rms_norm(x, layer["attn_norm"], config.rms_eps)
        q = apply_rope(_proj(h, layer, adapters, "q", scale).reshape(batch, seq, heads, dim), cos, sin)
        k = apply_rope(_proj(h, layer, adapters, "k", scale).reshape(batch, seq, kv, dim), cos, sin)
        v = _proj(h, layer, adapters, "v", scale).reshape(batch, seq, kv, dim)
        # Grouped-query attention: query heads (kv, group) share the kv-th key/value head.
        q = q.reshape(batch, seq, kv, group, dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k) / np.sqrt(dim)
        scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
        attn = jnp.einsum("bkgts,bskd->btkgd", jax.nn.softmax(scores, axis=-1), v).reshape(batch, seq, heads * dim)
        x = x + _proj(attn, layer, adapters, "o", scale)
        h = rms_norm(x, layer["ffn_norm"], config.rms_eps)
        gated = jax.nn.silu(_proj(h, layer, adapters, "gate", scale)) * _proj(h, layer, adapters, "up", scale)
        return x + _proj(gated, layer, adapters, "down", scale), None

    x, _ = jax.lax.scan(layer_step, x, (params["layers"], lora))
    return rms_norm(x, params["norm"], config.rms_eps)


def token_logprobs(params: Params, lora: Params, tokens: jax.Array, config: LlamaConfig, scale: float) -> jax.Array:
    """log p(tokens[:, t+1] | tokens[:, :t+1]) for every position: [B, T-1]."""
    logits = forward(params, lora, tokens[:, :-1], config, scale)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def masked_nll(
    params: Params, lora: Params, tokens: jax.Array, mask: jax.Array, config: LlamaConfig, scale: float
) -> jax.Array:
    """Mean negative log-likelihood over the positions where mask[:, 1:] is 1 (the assistant's tokens)."""
    logp = token_logprobs(params, lora, tokens, config, scale)
    weights = mask[:, 1:].astype(jnp.float32)
    return -(logp * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def merge(weights: dict[str, Any], lora: Params, scale: float) -> dict[str, np.ndarray]:
    """Per adapted matrix name: the stacked [L, in, out] merged weights W + scale * A @ B (numpy float32)."""
    merged = {}
    for name, ab in lora.items():
        delta = np.einsum("lir,lro->lio", np.asarray(ab["a"]), np.asarray(ab["b"])) * scale
        merged[name] = np.asarray(weights["layers"][name], dtype=np.float32) + delta.astype(np.float32)
    return merged
