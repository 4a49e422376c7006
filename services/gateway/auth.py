"""The admin key check (bearer tokens are read with llmops_common.service_auth.bearer_token)."""

from __future__ import annotations

import hmac


def admin_matches(presented: str | None, admin_key: str) -> bool:
    """Constant-time comparison of the admin bearer token."""
    return presented is not None and hmac.compare_digest(presented.encode(), admin_key.encode())
