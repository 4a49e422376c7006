"""Convert a llama-architecture GGUF (the packaged SmolLM2) into the Hugging Face folder vLLM loads, offline.

No PyTorch and no hub: the `gguf` package (llama.cpp's own reader) reads and dequantises the tensors with numpy,
`safetensors.numpy` writes them, and the `tokenizers` library rebuilds the byte-level BPE tokenizer from the
GGUF's vocabulary and merges. Weights are written as float16: every value of a Q4_1/Q8_0 tensor is a float16
scale times a small integer plus a float16 offset, so nothing is lost that the quantisation had not lost already.

llama.cpp's converter permutes the rows of the query and key projections (it wants RoPE's two halves
interleaved, Hugging Face's llama rotates the first half against the second); `unpermute` undoes that, or the
converted model would put every position in the wrong place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

HF_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
CONVERTER_VERSION = "1"  # bump when the output changes, so a seed registers a new version instead of reusing one
_TOKEN_CONTROL = 3  # llama.cpp's token type of special tokens (<|im_start|> ...)

_GLOBAL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def unpermute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's `permute` (convert_hf_to_gguf.py): per head, rows (pair, half) -> (half, pair)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def hf_name(gguf_name: str) -> str:
    """The Hugging Face llama parameter name of a GGUF tensor."""
    if gguf_name in _GLOBAL:
        return _GLOBAL[gguf_name]
    _, layer, kind, suffix = gguf_name.split(".")
    return f"model.layers.{layer}.{_LAYER[kind]}.{suffix}"


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_metadata(reader: Any) -> dict[str, Any]:
    """The llama hyper-parameters and special token ids the GGUF carries."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"only llama-architecture GGUFs convert here, not {arch!r}")
    heads = int(_field(reader, "llama.attention.head_count"))
    return {
        "hidden_size": int(_field(reader, "llama.embedding_length")),
        "intermediate_size": int(_field(reader, "llama.feed_forward_length")),
        "num_hidden_layers": int(_field(reader, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, "llama.attention.head_count_kv", heads)),
        "max_position_embeddings": int(_field(reader, "llama.context_length")),
        # Stored as float32 in the GGUF: 1e-05 reads back as 9.9999997e-06; six significant digits restore it.
        "rms_norm_eps": float(f"{float(_field(reader, 'llama.attention.layer_norm_rms_epsilon')):.6g}"),
        "rope_theta": float(_field(reader, "llama.rope.freq_base", 10000.0)),
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": int(
            _field(reader, "tokenizer.ggml.padding_token_id", _field(reader, "tokenizer.ggml.eos_token_id"))
        ),
        "unk_token_id": int(_field(reader, "tokenizer.ggml.unknown_token_id", 0)),
    }


def hf_config(meta: dict[str, Any], vocab_size: int, tied: bool) -> dict[str, Any]:
    """config.json of a LlamaForCausalLM with the GGUF's hyper-parameters."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_size": meta["hidden_size"],
        "intermediate_size": meta["intermediate_size"],
        "num_hidden_layers": meta["num_hidden_layers"],
        "num_attention_heads": meta["num_attention_heads"],
        "num_key_value_heads": meta["num_key_value_heads"],
        "head_dim": meta["hidden_size"] // meta["num_attention_heads"],
        "max_position_embeddings": meta["max_position_embeddings"],
        "rms_norm_eps": meta["rms_norm_eps"],
        "rope_theta": meta["rope_theta"],
        "rope_scaling": None,
        "tie_word_embeddings": tied,
        "vocab_size": vocab_size,
        "bos_token_id": meta["bos_token_id"],
        "eos_token_id": meta["eos_token_id"],
        "pad_token_id": meta["pad_token_id"],
        "torch_dtype": "float16",
        "use_cache": True,
    }


def convert_tensors(reader: Any, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Every tensor dequantised to float16 under its Hugging Face name, q/k projections un-permuted."""
    from gguf.quants import dequantize

    out: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        weight = dequantize(tensor.data, tensor.tensor_type)
        kind = tensor.name.split(".")[2] if tensor.name.startswith("blk.") else ""
        if kind == "attn_q":
            weight = unpermute(weight, meta["num_attention_heads"])
        elif kind == "attn_k":
            weight = unpermute(weight, meta["num_key_value_heads"])
        out[hf_name(tensor.name)] = np.ascontiguousarray(weight.astype(np.float16))
    return out


def special_tokens(tokens: list[str], token_types: list[int]) -> list[tuple[int, str]]:
    """(id, text) of the control tokens (<|im_start|>, <|im_end|> ...): never split, parsed in text as one token."""
    return [(i, t) for i, (t, k) in enumerate(zip(tokens, token_types, strict=True)) if k == _TOKEN_CONTROL]


def build_tokenizer(tokens: list[str], merges: list[str], token_types: list[int]) -> Any:
    """A byte-level BPE tokenizer (GPT-2 style, digits split one by one as SmolLM2's pre-tokenizer does)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {token: index for index, token in enumerate(tokens)}
    pairs = [(left, right) for left, _, right in (m.partition(" ") for m in merges)]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for _, t in special_tokens(tokens, token_types)]
    )
    return tokenizer


def tokenizer_config(tokens: list[str], token_types: list[int], meta: dict[str, Any], template: str | None) -> dict:
    """tokenizer_config.json: special tokens by the GGUF's ids, the chat template, no BOS added (as the GGUF)."""
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    special = special_tokens(tokens, token_types)
    added = {str(index): {"content": token, **flags} for index, token in special}
    named = {tokens[meta[f"{role}_token_id"]] for role in ("bos", "eos", "pad", "unk")}
    config: dict[str, Any] = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": meta["max_position_embeddings"],
        "bos_token": tokens[meta["bos_token_id"]],
        "eos_token": tokens[meta["eos_token_id"]],
        "pad_token": tokens[meta["pad_token_id"]],
        "unk_token": tokens[meta["unk_token_id"]],
        "added_tokens_decoder": added,
        "additional_special_tokens": [t for _, t in special if t not in named],
    }
    if template:
        config["chat_template"] = template
    return config


def convert(gguf_path: Path, out_dir: Path) -> dict[str, Any]:
    """Write the Hugging Face folder for `gguf_path` into `out_dir`; returns config.json's content."""
    from gguf import GGUFReader
    from safetensors.numpy import save_file

    reader = GGUFReader(str(gguf_path))
    meta = read_metadata(reader)
    tokens = [str(t) for t in _field(reader, "tokenizer.ggml.tokens")]
    merges = [str(m) for m in _field(reader, "tokenizer.ggml.merges")]
    token_types = [int(t) for t in _field(reader, "tokenizer.ggml.token_type")]
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise ValueError("only GGUFs with a gpt2-style (byte-level BPE) tokenizer convert here")
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = convert_tensors(reader, meta)
    tied = "lm_head.weight" not in tensors
    config = hf_config(meta, len(tokens), tied)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(tokens, merges, token_types).save(str(out_dir / "tokenizer.json"))
    template = _field(reader, "tokenizer.chat_template")
    _write_json(out_dir / "tokenizer_config.json", tokenizer_config(tokens, token_types, meta, template))
    _write_json(out_dir / "config.json", config)
    generation = {k: meta[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    _write_json(out_dir / "generation_config.json", generation)
    return config


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
