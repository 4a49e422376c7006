"""Export the packaged embedding model to ONNX, once, from the weights already on disk (no download)."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any


def export_onnx(model: Any, tokenizer: Any, path: Path) -> None:
    """Write `model` (a Hugging Face BERT-style encoder) as ONNX to `path`, atomically.

    The graph takes input_ids, attention_mask and token_type_ids with dynamic batch and sequence axes and
    returns the last hidden state; pooling and normalisation stay in numpy, where they are cheap and visible.
    """
    import torch

    class _Encoder(torch.nn.Module):
        """Positional inputs only: the exporter traces forward(*args), the model's forward wants keywords."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = tokenizer(["an example sentence to trace the graph"], return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dynamic = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename: two processes exporting at once never leave a half-written file.
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        # The TorchScript-based exporter (dynamo=False) is deprecated but supported by the pinned torch, and needs
        # no extra packages; the newer exporter pulls in onnxscript. Its warnings (deprecation, tracing, advanced
        # indexing) say nothing actionable here: the test suite checks the exported graph against the reference.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Encoder(model).eval(),
                tuple(sample[name] for name in names),
                tmp,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,
            )
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; other users of the cache (an image's app user) must read it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
