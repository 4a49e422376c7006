"""Helpers of the documentation tests: the repository root, the platform's env file, a readiness probe."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def platform_env() -> dict[str, str]:
    """LLMOPS_* variables from .llmops/env (written by `make up`), overridden by the environment."""
    env: dict[str, str] = {}
    path = ROOT / ".llmops" / "env"
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip()
    env.update({k: v for k, v in os.environ.items() if k.startswith("LLMOPS_")})
    return env


def reachable(url: str) -> bool:
    """True when `url` answers 200 within 3 seconds."""
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
