"""The platform's error catalogue: every `code` a service can answer with, its HTTP status, what it means and
what to do about it. One entry per code, in the file of the part of the platform that owns it:

    common.py      codes any service answers (shared handlers, body limit, key lookup at the gateway, service tokens)
    gateway.py     the gateway's OpenAI API and admin API          gateway_batch.py  its files and batches API
    inference.py   the model server                               rag.py            collections, jobs, answers
    registry.py    models, prompts, datasets, promotions          guardrails.py     the checks
    feedback.py    feedback, labeling, drift

Services raise as they always have (`APIError(404, "team_not_found", f"team '{team}' does not exist")`);
tests/common/test_error_codes.py reads their source (scripts/scan_error_codes.py) and fails when a code is not
here, when a status written next to it is not the catalogued one, or when a catalogued code is raised nowhere.
`docs/troubleshooting.md`'s code tables are generated from this catalogue (scripts/gen_troubleshooting.py).

To add a code: add an `ErrorCode(...)` to the owner's file (in the order its table should read), raise it, then
`python scripts/gen_troubleshooting.py` to rewrite the page. `api_error("team_not_found", team="x")` builds the
APIError from the entry, for a new raise site that wants the catalogued status and message as they are.

Why a catalogue of strings and not a Python Enum: the string is the contract (clients branch on it, other services
relay it, rag's jobs store it), and the raise sites keep their literal so a reader sees the code where it is raised;
the test, not the type checker, holds the two together.
"""

from __future__ import annotations

from typing import Any

from llmops_common.error_codes import (
    common,
    feedback,
    gateway,
    gateway_batch,
    guardrails,
    inference,
    rag,
    registry,
)
from llmops_common.error_codes.base import ErrorCode
from llmops_common.errors import APIError

__all__ = ["CATALOGUE", "SECTIONS", "ErrorCode", "api_error"]

# Section of docs/troubleshooting.md -> the codes its generated table lists, in order.
SECTIONS: dict[str, tuple[ErrorCode, ...]] = {
    "common": common.CODES,
    "service-tokens": common.SERVICE_TOKEN_CODES,
    "gateway": gateway.CODES,
    "gateway-batch": gateway_batch.CODES,
    "inference": inference.CODES,
    "registry": registry.CODES,
    "rag": rag.CODES,
    "rag-items": rag.ITEM_CODES,
    "guardrails": guardrails.CODES,
    "feedback": feedback.CODES,
}


def _index(sections: dict[str, tuple[ErrorCode, ...]]) -> dict[str, ErrorCode]:
    index: dict[str, ErrorCode] = {}
    for entry in (e for codes in sections.values() for e in codes):
        if entry.code in index:
            raise ValueError(f"error code {entry.code!r} is catalogued twice")
        index[entry.code] = entry
    return index


CATALOGUE: dict[str, ErrorCode] = _index(SECTIONS)


def api_error(code: str, status: int | None = None, *, param: str | None = None, **values: Any) -> APIError:
    """`CATALOGUE[code].api_error(...)`: a KeyError names a code nobody catalogued."""
    return CATALOGUE[code].api_error(status, param=param, **values)
