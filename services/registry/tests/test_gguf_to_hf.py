"""The GGUF -> Hugging Face conversion the seed runs for vLLM: the converted folder must be the model llama.cpp
runs from the GGUF (same tokens for the same text, same greedy continuation), read as Hugging Face reads it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.registry.gguf_to_hf import HF_FILES, unpermute
from services.registry.tests.numpy_llama import NumpyLlama

CHAT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
STRINGS = [
    "Hello world",
    "  two leading spaces, then 12345 digits and 3.14",
    "naïve café — déjà vu 🙂 中文",
    "line one\nline two\n\n\ttabbed",
    "def f(x):\n    return x**2  # comment",
    CHAT,
]


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute, verbatim in numpy."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def test_unpermute_inverts_llama_cpp_permute() -> None:
    """Undoing the q/k row permutation gives back the Hugging Face rows, for any head count."""
    rng = np.random.default_rng(0)
    for heads in (1, 3, 9):
        hf = rng.standard_normal((heads * 64, 576)).astype(np.float32)
        assert np.array_equal(unpermute(permute(hf, heads), heads), hf)
        assert not np.array_equal(permute(hf, heads), hf)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged GGUF converted once for the module."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        pytest.fail("the `gguf` package (gguf==0.19.0, requirements/registry.in) is not installed")
    from services.inference.engines.llamacpp import packaged_smollm2_path
    from services.registry.gguf_to_hf import convert

    out = tmp_path_factory.mktemp("smollm2-hf")
    convert(packaged_smollm2_path(), out)
    return out


@pytest.fixture(scope="module")
def llama_cpp() -> Iterator[Any]:
    """llama.cpp on the GGUF itself (xllamacpp, the inference service's engine), with its HTTP endpoints."""
    import xllamacpp

    from services.inference.engines.llamacpp import packaged_smollm2_path, server_params

    params = server_params(packaged_smollm2_path(), context_length=512, parallel_slots=1, threads=2, http_port=0)
    server = xllamacpp.Server(params)
    yield server
    del server


def _tokenize(server: Any, text: str) -> list[int]:
    body = json.dumps({"content": text, "add_special": False, "parse_special": True}).encode()
    request = urllib.request.Request(
        server.listening_address + "/tokenize", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return list(json.loads(response.read())["tokens"])


def test_folder_has_what_vllm_loads(converted: Path) -> None:
    """config, weights, tokenizer and generation config; tied embeddings; the GGUF's hyper-parameters."""
    assert {p.name for p in converted.iterdir()} == set(HF_FILES)
    config = json.loads((converted / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (576, 30, 3)
    assert config["tie_word_embeddings"] is True and config["rms_norm_eps"] == 1e-05
    tok_config = json.loads((converted / "tokenizer_config.json").read_text())
    assert (tok_config["bos_token"], tok_config["eos_token"]) == ("<|im_start|>", "<|im_end|>")
    assert "add_generation_prompt" in tok_config["chat_template"]


def test_tokenizer_matches_llama_cpp(converted: Path, llama_cpp: Any) -> None:
    """The rebuilt tokenizer gives llama.cpp's token ids, special tokens included, and decodes back to the text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(converted / "tokenizer.json"))
    for text in STRINGS:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == _tokenize(llama_cpp, text), text
        assert tokenizer.decode(ids, skip_special_tokens=False) == text


def test_greedy_continuation_matches_llama_cpp(converted: Path, llama_cpp: Any) -> None:
    """A numpy forward pass over the converted weights continues the chat exactly as llama.cpp does on the GGUF
    (a q/k permutation left in place would scramble positions and diverge at the first token)."""
    prompt = _tokenize(llama_cpp, CHAT)
    reply = llama_cpp.handle_completions(
        {"prompt": prompt, "n_predict": 8, "temperature": 0, "n_probs": 1, "cache_prompt": False}
    )
    expected = [step["id"] for step in reply["choices"][0]["logprobs"]["content"]]
    expected_logprobs = [step["logprob"] for step in reply["choices"][0]["logprobs"]["content"]]
    tokens, logprobs = NumpyLlama(converted).greedy(prompt, len(expected))
    assert tokens == expected
    # llama.cpp multiplies with 8-bit activations; float32 here: close, not equal.
    assert np.allclose(logprobs, expected_logprobs, atol=0.15)
