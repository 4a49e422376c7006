"""The LoRA training loop: seeded batches, jax.grad, a hand-written AdamW, checkpoints, a progress bar.

Determinism: the batch of step s is a function of (seed, s) only (epoch = s * batch // n, one permutation per
epoch), and the adapters start from PRNGKey(seed); so a run resumed from a checkpoint at step k continues with
exactly the batches and optimizer state the uninterrupted run had at step k, and ends at the same weights.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from services.finetune import model as M
from services.finetune.chat import Encoded
from services.finetune.gguf_io import LlamaConfig


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; all of them are logged as MLflow params and stored in every checkpoint."""

    steps: int = 60
    batch_size: int = 8
    lr: float = 2e-3
    warmup_steps: int = 5
    weight_decay: float = 0.0
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = ("q", "v")
    seed: int = 0
    checkpoint_every: int = 20
    max_len: int = 256  # longer examples are refused (not truncated: a cut answer teaches the wrong thing)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def as_params(self) -> dict[str, Any]:
        return {**asdict(self), "targets": ",".join(self.targets)}


@dataclass
class Batches:
    """Fixed-shape arrays of the whole training set: one compile for every step."""

    tokens: np.ndarray  # [N, T] int32, right-padded
    positions: np.ndarray  # [N, A] int32: the positions whose next token is an answer token
    targets: np.ndarray  # [N, A] int32: those answer tokens
    weights: np.ndarray  # [N, A] float32: 1 for a real answer token, 0 for padding

    @property
    def answer_tokens(self) -> int:
        return int(self.weights.sum())


def pack(examples: list[Encoded], pad_id: int, max_len: int, multiple: int = 16) -> Batches:
    """Pad every example to one length (rounded up to `multiple`); answer positions padded likewise."""
    too_long = [i for i, e in enumerate(examples) if len(e.ids) > max_len]
    if too_long:
        raise ValueError(f"{len(too_long)} examples are longer than max_len={max_len} tokens (first: #{too_long[0]})")
    seq = math.ceil(max(len(e.ids) for e in examples) / multiple) * multiple
    answers = max(sum(e.mask) for e in examples)
    n = len(examples)
    tokens = np.full((n, seq), pad_id, np.int32)
    positions = np.zeros((n, answers), np.int32)
    targets = np.zeros((n, answers), np.int32)
    weights = np.zeros((n, answers), np.float32)
    for i, e in enumerate(examples):
        tokens[i, : len(e.ids)] = e.ids
        idx = [t for t in range(1, len(e.ids)) if e.mask[t]]
        positions[i, : len(idx)] = [t - 1 for t in idx]
        targets[i, : len(idx)] = [e.ids[t] for t in idx]
        weights[i, : len(idx)] = 1.0
    return Batches(tokens, positions, targets, weights)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Rows of step `step`: consecutive slices of one seeded permutation per epoch (wrapping across epochs)."""
    rows = []
    for flat in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(flat, n)
        rows.append(np.random.default_rng([seed, epoch]).permutation(n)[offset])
    return np.asarray(rows, np.int32)


def answer_nll(
    params: M.Params, lora: M.Params, batch: dict[str, jax.Array], config: LlamaConfig, scale: float
) -> jax.Array:
    """Mean NLL of the answer tokens; the vocabulary projection is computed only where an answer token is
    predicted (a fifth of the model's FLOPs per position are in that projection, most positions are prompt)."""
    hidden = M.hidden_states(params, lora, batch["tokens"], config, scale)
    picked = jnp.take_along_axis(hidden, batch["positions"][..., None], axis=1)
    logp = jax.nn.log_softmax(M.project(params, picked), axis=-1)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
    return (nll * batch["weights"]).sum() / jnp.maximum(batch["weights"].sum(), 1.0)


def adamw_init(lora: M.Params) -> dict[str, Any]:
    zeros = jax.tree_util.tree_map(jnp.zeros_like, lora)
    return {"m": zeros, "v": jax.tree_util.tree_map(jnp.zeros_like, lora), "step": jnp.zeros((), jnp.int32)}


def adamw_update(
    lora: M.Params,
    grads: M.Params,
    opt: dict[str, Any],
    lr: jax.Array,
    weight_decay: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[M.Params, dict[str, Any]]:
    """AdamW (Loshchilov & Hutter): Adam's bias-corrected moments, weight decay applied to the weights directly."""
    step = opt["step"] + 1
    m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, opt["m"], grads)
    v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, opt["v"], grads)
    c1, c2 = 1 - b1 ** step.astype(jnp.float32), 1 - b2 ** step.astype(jnp.float32)
    new = jax.tree_util.tree_map(
        lambda w, m, v: w - lr * ((m / c1) / (jnp.sqrt(v / c2) + eps) + weight_decay * w), lora, m, v
    )
    return new, {"m": m, "v": v, "step": step}


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then linear decay to 10 % of the peak at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (1.0 - 0.9 * progress)


@functools.lru_cache(maxsize=4)
def make_step(config: LlamaConfig, cfg: TrainConfig) -> Callable[..., Any]:
    """One jitted optimisation step: (lora, opt, params, batch, lr) -> (lora, opt, loss). Cached: a resumed run
    in the same process reuses the compiled step."""

    def step(
        lora: M.Params, opt: dict[str, Any], params: M.Params, batch: dict[str, jax.Array], lr: jax.Array
    ) -> tuple[M.Params, dict[str, Any], jax.Array]:
        loss, grads = jax.value_and_grad(answer_nll, argnums=1)(params, lora, batch, config, cfg.scale)
        lora, opt = adamw_update(lora, grads, opt, lr, cfg.weight_decay)
        return lora, opt, loss

    return jax.jit(step)


# ---- checkpoints --------------------------------------------------------------------------------------------
def _flatten(prefix: str, tree: Any, out: dict[str, np.ndarray]) -> None:
    if isinstance(tree, dict):
        for key, value in tree.items():
            _flatten(f"{prefix}/{key}" if prefix else key, value, out)
    else:
        out[prefix] = np.asarray(tree)


def _unflatten(flat: dict[str, np.ndarray], prefix: str) -> Any:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        if not key.startswith(prefix + "/"):
            continue
        node = tree
        *parents, leaf = key[len(prefix) + 1 :].split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(value)
    return tree


def save_checkpoint(folder: Path, state: TrainState) -> Path:
    """step-NNNNNN.npz (adapters + optimizer moments) and .json (step, config, dataset digest, loss curve)."""
    folder.mkdir(parents=True, exist_ok=True)
    flat: dict[str, np.ndarray] = {}
    _flatten("lora", state.lora, flat)
    _flatten("opt", state.opt, flat)
    path = folder / f"step-{state.step:06d}.npz"
    tmp = folder / f".step-{state.step:06d}.tmp.npz"
    np.savez(tmp, **flat)  # type: ignore[arg-type]
    tmp.replace(path)
    meta = {
        "step": state.step,
        "config": state.cfg.as_params(),
        "dataset_sha256": state.dataset_sha256,
        "losses": state.losses,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def latest_checkpoint(folder: Path) -> Path | None:
    found = sorted(folder.glob("step-*.npz")) if folder.is_dir() else []
    return found[-1] if found else None


@dataclass
class TrainState:
    cfg: TrainConfig
    dataset_sha256: str
    lora: M.Params
    opt: dict[str, Any]
    step: int = 0
    losses: list[float] = field(default_factory=list)


def initial_state(config: LlamaConfig, cfg: TrainConfig, dataset_sha256: str) -> TrainState:
    lora = M.init_lora(config, cfg.targets, cfg.rank, jax.random.PRNGKey(cfg.seed))
    return TrainState(cfg, dataset_sha256, lora, adamw_init(lora))


def load_checkpoint(path: Path, cfg: TrainConfig, dataset_sha256: str) -> TrainState:
    """Resume; refuses a checkpoint of another configuration or dataset (it would silently mix two runs)."""
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta["config"] != cfg.as_params() or meta["dataset_sha256"] != dataset_sha256:
        raise ValueError(f"{path} was written by another configuration or dataset; use a fresh --checkpoints folder")
    with np.load(path) as data:
        flat = {k: data[k] for k in data.files}
    return TrainState(
        cfg, dataset_sha256, _unflatten(flat, "lora"), _unflatten(flat, "opt"), int(meta["step"]), list(meta["losses"])
    )


def train(
    params: M.Params,
    config: LlamaConfig,
    data: Batches,
    cfg: TrainConfig,
    state: TrainState,
    checkpoints: Path | None,
    until: int | None = None,
    progress: bool = True,
) -> tuple[TrainState, dict[str, float]]:
    """Run steps state.step .. (until or cfg.steps); returns the state and throughput figures."""
    from tqdm import tqdm

    step_fn = make_step(config, cfg)
    end = min(until if until is not None else cfg.steps, cfg.steps)
    n = data.tokens.shape[0]
    seen_tokens = 0
    steps_run = 0
    started = time.perf_counter()
    first_step_s = 0.0
    bar = tqdm(
        total=end,
        initial=state.step,
        desc="finetune",
        unit="step",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    while state.step < end:
        rows = batch_indices(n, cfg.batch_size, cfg.seed, state.step)
        batch = {
            "tokens": jnp.asarray(data.tokens[rows]),
            "positions": jnp.asarray(data.positions[rows]),
            "targets": jnp.asarray(data.targets[rows]),
            "weights": jnp.asarray(data.weights[rows]),
        }
        t0 = time.perf_counter()
        lr = jnp.asarray(learning_rate(cfg, state.step), jnp.float32)
        state.lora, state.opt, loss = step_fn(state.lora, state.opt, params, batch, lr)
        loss_value = float(loss)  # waits for the step: the timing below is real
        if not first_step_s:
            first_step_s = time.perf_counter() - t0  # includes XLA's compilation
        state.step += 1
        state.losses.append(loss_value)
        seen_tokens += int(data.tokens[rows].size)
        steps_run += 1
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{seen_tokens / elapsed:.0f}", lr=f"{float(lr):.1e}")
        bar.update(1)
        if checkpoints is not None and (state.step % cfg.checkpoint_every == 0 or state.step == end):
            save_checkpoint(checkpoints, state)
    bar.close()
    elapsed = time.perf_counter() - started
    steady = elapsed - first_step_s
    per_step = cfg.batch_size * data.tokens.shape[1]
    return state, {
        "train_seconds": elapsed,
        "compile_and_first_step_seconds": first_step_s,
        "steps_run": float(steps_run),
        # Tokens through the model (padding included: it costs the same) per second, the first step (XLA's
        # compilation) left out.
        "train_tokens_per_s": (steps_run - 1) * per_step / steady if steps_run > 1 and steady > 0 else 0.0,
    }
