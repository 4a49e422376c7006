"""ENGINES: engine name -> factory. The one list of engines: settings, the loader and the docs derive from it.

Adding an engine is one file in this folder (a class implementing `base.Engine` and a `build(settings, spec)`
function) and one line here; docs/extending.md walks through it. The registry service keeps its own copy of
the names for validating model versions (services do not import each other); a test holds the two equal.
"""

from __future__ import annotations

import difflib

from services.inference.engines import llamacpp_process, openai_upstream
from services.inference.engines.base import EngineFactory

ENGINES: dict[str, EngineFactory] = {
    # llama.cpp on CPU with a GGUF file (a child process per version, or in-process: engine_isolation).
    "llamacpp": llamacpp_process.build,
    # Any OpenAI-compatible server at INFERENCE_UPSTREAM_URL.
    "openai": openai_upstream.build,
    # The vLLM OpenAI server: the same adapter, named apart so a registry version says which server it needs.
    "vllm": openai_upstream.build,
}


def engine_factory(name: str) -> EngineFactory:
    """The factory of a registered engine; an unknown name is an error listing the known ones."""
    try:
        return ENGINES[name]
    except KeyError:
        close = difflib.get_close_matches(name, ENGINES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown engine {name!r}{hint}; registered engines: {sorted(ENGINES)}") from None
