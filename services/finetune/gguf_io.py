"""Read the served GGUF into a trainable model, and write a merged model back as a GGUF of the same quantisation.

The tensor names and llama.cpp's q/k row permutation are the ones services/registry/gguf_to_hf.py already handles
for vLLM: weights are kept here in the Hugging Face layout (rotate-half RoPE), so the JAX model reads like the
reference llama and like tests/numpy_llama.py; `permute` puts the rows back in llama.cpp's order on the way out.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.registry.gguf_to_hf import _field, build_tokenizer, read_metadata, unpermute

# GGUF tensor kind (blk.N.<kind>.weight) -> our per-layer parameter name.
LAYER_KINDS = {
    "attn_norm": "attn_norm",
    "attn_q": "q",
    "attn_k": "k",
    "attn_v": "v",
    "attn_output": "o",
    "ffn_norm": "ffn_norm",
    "ffn_gate": "gate",
    "ffn_up": "up",
    "ffn_down": "down",
}
KIND_OF = {v: k for k, v in LAYER_KINDS.items()}


@dataclass(frozen=True)
class LlamaConfig:
    """The hyper-parameters the GGUF carries (read_metadata), in the names the JAX model uses."""

    vocab_size: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    rope_theta: float
    rms_eps: float
    tied: bool
    bos_id: int
    eos_id: int
    pad_id: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GgufModel:
    """Everything read from one GGUF: config, float32 weights (HF layout, [in, out] for matmuls), tokenizer."""

    path: Path
    config: LlamaConfig
    weights: dict[str, Any]  # embed [V, D], norm [D], lm_head [D, V] if untied, layers: name -> [L, ...]
    tokenizer: Any
    chat_template: str
    quant_types: dict[str, str]  # GGUF tensor name -> quantisation type name (Q4_1, Q8_0, F32)


def permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py permute (the inverse of gguf_to_hf.unpermute)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load(path: Path) -> GgufModel:
    """Dequantise every tensor of a llama GGUF to float32 (numpy; the JAX side converts)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    meta = read_metadata(reader)
    tokens = [str(t) for t in _field(reader, "tokenizer.ggml.tokens")]
    merges = [str(m) for m in _field(reader, "tokenizer.ggml.merges")]
    token_types = [int(t) for t in _field(reader, "tokenizer.ggml.token_type")]
    names = {t.name for t in reader.tensors}
    config = LlamaConfig(
        vocab_size=len(tokens),
        hidden=meta["hidden_size"],
        intermediate=meta["intermediate_size"],
        layers=meta["num_hidden_layers"],
        heads=meta["num_attention_heads"],
        kv_heads=meta["num_key_value_heads"],
        rope_theta=meta["rope_theta"],
        rms_eps=meta["rms_norm_eps"],
        tied="output.weight" not in names,
        bos_id=meta["bos_token_id"],
        eos_id=meta["eos_token_id"],
        pad_id=meta["pad_token_id"],
    )
    layers: dict[str, list[np.ndarray | None]] = {name: [None] * config.layers for name in LAYER_KINDS.values()}
    weights: dict[str, Any] = {}
    quant_types: dict[str, str] = {}
    for tensor in reader.tensors:
        quant_types[tensor.name] = tensor.tensor_type.name
        w = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        if tensor.name == "token_embd.weight":
            weights["embed"] = w
        elif tensor.name == "output_norm.weight":
            weights["norm"] = w
        elif tensor.name == "output.weight":
            weights["lm_head"] = np.ascontiguousarray(w.T)
        else:
            _, layer, kind, _ = tensor.name.split(".")
            if kind == "attn_q":
                w = unpermute(w, config.heads)
            elif kind == "attn_k":
                w = unpermute(w, config.kv_heads)
            # Matrices are stored [out, in]; the model computes x @ W, so keep [in, out].
            layers[LAYER_KINDS[kind]][int(layer)] = np.ascontiguousarray(w.T) if w.ndim == 2 else w
    weights["layers"] = {name: np.stack(parts) for name, parts in layers.items()}  # type: ignore[arg-type]
    return GgufModel(
        path=path,
        config=config,
        weights=weights,
        tokenizer=build_tokenizer(tokens, merges, token_types),
        chat_template=str(_field(reader, "tokenizer.chat_template")),
        quant_types=quant_types,
    )


def gguf_layer_weight(config: LlamaConfig, name: str, merged: np.ndarray) -> np.ndarray:
    """A merged [in, out] HF-layout matrix back as the GGUF stores it: [out, in], q/k rows permuted."""
    w = np.ascontiguousarray(merged.T)
    if name == "q":
        w = permute(w, config.heads)
    elif name == "k":
        w = permute(w, config.kv_heads)
    return w


def write_merged(
    source: Path, target: Path, replaced: dict[str, np.ndarray], metadata: dict[str, str], quant: str | None = None
) -> dict[str, str]:
    """Copy `source` to `target`, replacing tensors (GGUF name -> float32 [out, in]), each quantised with `quant`
    (a GGML type name: F16, Q8_0, Q4_1 ...) or, when None, with the tensor's own type (gguf.quants.quantize);
    every other tensor is copied byte for byte. `metadata` adds string keys (lineage). Returns name -> type."""
    import gguf
    from gguf.quants import quantize

    reader = gguf.GGUFReader(str(source))
    arch = str(_field(reader, "general.architecture"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    writer = gguf.GGUFWriter(str(partial), arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        # The writer adds the architecture and the GGUF.* header fields itself.
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.") or field.name in metadata:
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), val_type, sub_type=sub_type)
    for key, value in metadata.items():
        writer.add_key_value(key, value, gguf.GGUFValueType.STRING)
    written: dict[str, str] = {}
    data: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        raw, qtype = tensor.data, tensor.tensor_type
        if tensor.name in replaced:
            new = np.ascontiguousarray(replaced[tensor.name], dtype=np.float32)
            qtype = gguf.GGMLQuantizationType[quant] if quant else tensor.tensor_type
            raw = quantize(new, qtype)
            if qtype == tensor.tensor_type and raw.shape != tensor.data.shape:
                raise ValueError(f"{tensor.name}: quantised shape {raw.shape} != original {tensor.data.shape}")
        data[tensor.name] = raw
        written[tensor.name] = qtype.name
        writer.add_tensor_info(tensor.name, raw.shape, raw.dtype, raw.nbytes, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(data[tensor.name], tensor_endianess=reader.endianess)
    writer.close()
    partial.replace(target)  # a reader (the engine) never sees half a file
    return written


def write_truncated(source: Path, target: Path, layers: int) -> Path:
    """The first `layers` blocks of `source` as a model of its own (same vocabulary, head and tokenizer).

    For tests and demos of the loop where the model's quality does not matter but the file must be a real GGUF
    that llama.cpp loads: 2 of SmolLM2's 30 blocks train about 4x faster (the 49152-token head stays)."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch = str(_field(reader, "general.architecture"))
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(target), arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = layers if field.name == f"{arch}.block_count" else field.contents()
        writer.add_key_value(field.name, value, val_type, sub_type=sub_type)
    kept = [t for t in reader.tensors if not t.name.startswith("blk.") or int(t.name.split(".")[1]) < layers]
    for tensor in kept:
        writer.add_tensor_info(
            tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in kept:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return target
