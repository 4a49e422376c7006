"""The trained injection model as the service loads it: plain JSON plus one safetensors file, numpy only.

Artifact (a folder, or two files side by side at a registry URI):
  * `injection_model.json`: format version, feature settings, per mode the intercept, the dense weights and
    the decision threshold, the sha256 of the weights file, and the training record (data lineage,
    leave-one-source-out results, versions, command);
    Optionally `harmful`: the learned harmful-request model (same shape as a mode's entry; its hashed weights
    are `harmful.hashed`), run in input mode beside the harmful-request rules. Artifacts without it load
    as before and the rules alone find harmful requests;
  * `injection_model.safetensors`: the hashed-feature weights per mode (float16). Safetensors is an
    8-byte header length, a JSON header and raw little-endian arrays: read here with numpy alone, nothing
    executable, no pickle.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.guardrails.detectors.features import WindowFeatures

MODEL_JSON = "injection_model.json"
WEIGHTS_FILE = "injection_model.safetensors"
FORMAT = "guardrails-injection/2"
_DTYPES = {"F16": np.float16, "F32": np.float32}
_NAMES = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}


def write_safetensors(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write float arrays in the safetensors layout (what `read_safetensors` reads)."""
    header: dict[str, Any] = {}
    blobs = []
    offset = 0
    for name, arr in arrays.items():
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        span = [offset, offset + len(data)]
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": span}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of a safetensors file; raises ValueError on anything malformed."""
    if len(data) < 8:
        raise ValueError("not a safetensors file")
    (size,) = struct.unpack("<Q", data[:8])
    if size > len(data) - 8:
        raise ValueError("safetensors header runs past the end of the file")
    header = json.loads(data[8 : 8 + size])
    body = data[8 + size :]
    out = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        if spec["dtype"] not in _DTYPES or not 0 <= start <= end <= len(body):
            raise ValueError(f"bad tensor {name!r} in safetensors file")
        arr = np.frombuffer(body[start:end], dtype=np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(spec["shape"]).astype(np.float32)
    return out


@dataclass(frozen=True)
class ModeModel:
    """One check mode's linear model and threshold."""

    hashed: np.ndarray
    dense: np.ndarray
    intercept: float
    threshold: float

    def scores(self, windows: list[WindowFeatures]) -> np.ndarray:
        """Probability of an attack for each window."""
        logits = np.array(
            [float(self.hashed[w.indices].sum()) * w.value + float(w.dense @ self.dense) for w in windows]
        )
        return 1.0 / (1.0 + np.exp(-(logits + self.intercept)))


@dataclass(frozen=True)
class InjectionModel:
    """Both modes' models plus the artifact's metadata (lineage, evaluation, version)."""

    modes: dict[str, ModeModel]
    hash_bits: int
    metadata: dict[str, Any]
    harmful: ModeModel | None = None  # the harmful-request model, when the artifact has one

    @property
    def version(self) -> str:
        """What the artifact calls itself (the registry version when it came from there)."""
        return str(self.metadata.get("version") or self.metadata.get("trained_at") or "packaged")

    @classmethod
    def from_bytes(cls, meta_raw: bytes, weights_raw: bytes, version: str | None = None) -> InjectionModel:
        """Parse and verify an artifact (the weights must match the sha256 the JSON records)."""
        meta = json.loads(meta_raw)
        if meta.get("format") != FORMAT:
            raise ValueError(f"unsupported injection model format {meta.get('format')!r}; expected {FORMAT}")
        digest = hashlib.sha256(weights_raw).hexdigest()
        if digest != meta["weights_sha256"]:
            raise ValueError(f"injection model weights sha256 {digest} does not match {meta['weights_sha256']}")
        arrays = read_safetensors(weights_raw)

        def part(name: str, spec: dict[str, Any]) -> ModeModel:
            return ModeModel(
                hashed=arrays[f"{name}.hashed"],
                dense=np.asarray(spec["dense"], dtype=np.float32),
                intercept=float(spec["intercept"]),
                threshold=float(spec["threshold"]),
            )

        modes = {name: part(name, spec) for name, spec in meta["modes"].items()}
        harmful = part("harmful", meta["harmful"]) if meta.get("harmful") else None
        if version is not None:
            meta = {**meta, "version": version}
        return cls(modes, int(meta["features"]["hash_bits"]), meta, harmful)

    @classmethod
    def load(cls, folder: Path) -> InjectionModel:
        """Read the artifact from a folder."""
        return cls.from_bytes((folder / MODEL_JSON).read_bytes(), (folder / WEIGHTS_FILE).read_bytes())
