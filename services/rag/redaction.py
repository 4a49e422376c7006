"""Optional PII redaction through the guardrails service (used at ingestion when a caller asks for it).

Contract: the guardrails service's POST {url}/v1/check/input with the `pii-redaction` policy (redacts PII and
secrets, never blocks a document); the answer's `text` is the redacted text when its decision is `redact`.
"""

from __future__ import annotations

import logging

from llmops_common.http import BlockingHTTP, HTTPError
from llmops_common.service_auth import service_headers

log = logging.getLogger("rag.redaction")


class GuardrailsRedactor:
    """Synchronous client: ingestion runs on a worker thread."""

    def __init__(
        self, base_url: str, timeout_s: float = 10.0, policy: str = "pii-redaction", token: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = service_headers(token)  # RAG_GUARDRAILS_TOKEN: guardrails answers platform services only
        self.timeout_s = timeout_s
        self.policy = policy

    def redact(self, text: str) -> str | None:
        """The redacted text, or None when the service is unavailable (the caller records a warning)."""
        try:
            # one connection per document, as before: the redactor is created once and never closed
            with BlockingHTTP(headers=self.headers, timeout_s=self.timeout_s, connect_s=self.timeout_s) as http:
                resp = http.post(f"{self.base_url}/v1/check/input", json={"text": text, "policy": self.policy})
            resp.raise_for_status()
            verdict = resp.json()
        except (*HTTPError, ValueError) as exc:
            log.warning("PII redaction unavailable", extra={"error": str(exc)})
            return None
        if verdict.get("decision") == "redact" and isinstance(verdict.get("text"), str):
            return str(verdict["text"])
        return text  # nothing to redact
