"""Replacing one scoring function of qdrant-client's local mode, only for the versions it was tested with.

local_sparse.py and local_dense.py each swap one function of `qdrant_client.local.local_collection` for a faster one
with the same results. Both follow the same rule, kept here once: install at most once (a wrapper already in place
stays), and leave an untested qdrant-client alone (its internals may have changed), saying so in the log.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from typing import Any

TESTED_VERSIONS = ("1.20.",)


def qdrant_client_version() -> str:
    import qdrant_client

    return getattr(qdrant_client, "__version__", None) or importlib.metadata.version("qdrant-client")


def replace_local_function(name: str, wrapper: type, log: logging.Logger, what: str) -> bool:
    """Wrap `local_collection.<name>` in `wrapper(original)`; False (and a log line) for an untested qdrant-client."""
    from qdrant_client.local import local_collection

    current: Callable[..., Any] = getattr(local_collection, name)
    if isinstance(current, wrapper):
        return True
    version = qdrant_client_version()
    if not any(version.startswith(prefix) for prefix in TESTED_VERSIONS):
        log.warning(f"{what} left as is", extra={"qdrant_client": version})
        return False
    setattr(local_collection, name, wrapper(current))
    return True
