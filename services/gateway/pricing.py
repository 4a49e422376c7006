"""Prices and costs. Money is counted in integer nano-USD so Redis arithmetic is exact."""

from __future__ import annotations

import math
from dataclasses import dataclass

NANO = 1_000_000_000


def usd_to_nano(usd: float) -> int:
    """Convert dollars to nano-dollars, rounding to the nearest unit."""
    return round(usd * NANO)


def nano_to_usd(nano: int) -> float:
    """Convert nano-dollars back to dollars for display."""
    return nano / NANO


@dataclass(frozen=True)
class Price:
    """USD per 1M input (prompt) and output (completion) tokens."""

    input_per_1m: float = 0.0
    output_per_1m: float = 0.0

    def cost_nano(self, prompt_tokens: int, completion_tokens: int) -> int:
        """Cost of a request in nano-USD, rounded up so spend is never under-counted."""
        # USD per 1M tokens == nano-USD per 1/1000 token: 1e9 / 1e6 = 1000 nano-USD per token per $1/1M.
        exact = (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) * 1000
        return math.ceil(round(exact, 6))
