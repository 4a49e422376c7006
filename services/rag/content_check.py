"""Retrieved chunks are text the model reads, not the user's words: check them (indirect injection) before a prompt.

Contract: the guardrails service's `POST {url}/v1/check/content` with `{"texts": [...], "team", "project"}` answers
`{"decision", "results": [{"index", "decision", "findings", "text"}], "fail_mode", ...}`. Per chunk: `block` drops
it, `flag` fences it in the prompt (quoted material, not instructions), `redact` swaps in the redacted text,
`allow` keeps it. When the service cannot answer, the team's fail mode applies: the last one a check reported
for that team, else RAG_GUARDRAILS_FAIL_MODE; `closed` refuses the answer with a 503.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from llmops_common.errors import APIError
from llmops_common.http import AsyncHTTP, HTTPError
from llmops_common.service_auth import service_headers
from services.rag.gateway import Caller
from services.rag.retrieval import Passage

log = logging.getLogger("rag.content_check")
_ACTIONS = {"block": "dropped", "flag": "fenced", "redact": "redacted"}


@dataclass
class Screened:
    """The passages that may go into the prompt, and what the check did (for the answer's metadata)."""

    passages: list[Passage]
    status: str  # checked | unavailable | off
    guarded: list[dict[str, Any]] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        """`content_check` and `guarded` (one entry per chunk the check did not simply allow)."""
        return {"content_check": self.status, "guarded": self.guarded}


class ContentGuard:
    """Async client of guardrails' content mode; one call per answer, whatever the number of chunks."""

    def __init__(self, base_url: str, token: str | None, timeout_s: float, default_fail_mode: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.default_fail_mode = default_fail_mode
        self._http = AsyncHTTP(headers=service_headers(token), timeout_s=timeout_s, connect_s=timeout_s)
        self._fail_modes: dict[str, str] = {}  # team -> the fail_mode its policy reported last (bounded below)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def screen(self, caller: Caller, passages: list[Passage]) -> Screened:
        """Check every passage in one call; drop, fence or redact as the results say."""
        if not passages:
            return Screened([], "checked")
        body = {"texts": [p.text for p in passages], "team": caller.team, "project": caller.project}
        try:
            resp = await self._http.post(f"{self.base_url}/v1/check/content", json=body)
            if resp.status_code != 200:
                resp.raise_for_status()  # an error status: a StatusError (HTTPError)
                raise ValueError(f"answered {resp.status_code}")
            verdict = resp.json()
            results = {int(r["index"]): r for r in verdict["results"]}
        except (*HTTPError, ValueError, KeyError, TypeError) as exc:
            return self._unavailable(caller, passages, exc)
        if verdict.get("fail_mode") in ("open", "closed"):
            if len(self._fail_modes) > 10_000:
                self._fail_modes.clear()
            self._fail_modes[caller.team] = verdict["fail_mode"]
        kept: list[Passage] = []
        guarded: list[dict[str, Any]] = []
        for i, passage in enumerate(passages):
            result = results.get(i, {})
            decision = str(result.get("decision", "allow"))
            if decision == "allow":
                kept.append(passage)
                continue
            action = _ACTIONS.get(decision, "fenced")  # an unknown decision is treated as a flag
            guarded.append({"chunk_id": passage.chunk_id, "decision": decision, "action": action})
            if action == "fenced":
                kept.append(dataclasses.replace(passage, fenced=True))
            elif action == "redacted":
                text = result.get("text")
                kept.append(dataclasses.replace(passage, text=text) if isinstance(text, str) else passage)
        return Screened(kept, "checked", guarded)

    def _unavailable(self, caller: Caller, passages: list[Passage], exc: Exception) -> Screened:
        fail_mode = self._fail_modes.get(caller.team, self.default_fail_mode)
        log.warning("content check unavailable", extra={"error": str(exc), "fail_mode": fail_mode})
        if fail_mode == "closed":
            raise APIError(
                503,
                "guardrails_unavailable",
                "the guardrails service could not check the retrieved passages and this team's policy is "
                "fail-closed; retry shortly",
                headers={"retry-after": "5"},
            )
        return Screened(list(passages), "unavailable")
