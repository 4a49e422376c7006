"""Bearer tokens: reading them from the Authorization header and checking the admin key."""

from __future__ import annotations

import hmac


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header."""
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def admin_matches(presented: str | None, admin_key: str) -> bool:
    """Constant-time comparison of the admin bearer token."""
    return presented is not None and hmac.compare_digest(presented.encode(), admin_key.encode())
