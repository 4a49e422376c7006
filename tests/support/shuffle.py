"""Shuffled test order, for flushing out tests that pass only in the order they were written.

Set `LLMOPS_TEST_SHUFFLE=<seed>` (`make test-repeat` does) and the collected tests run in an order drawn from that
seed, shuffled level by level — top folders, packages, modules, classes, then the tests of each module — so
package- and module-scoped fixtures (a started platform, a loaded model) are still set up once per group. The seed
is printed in the header; the same seed gives the same order, so a failure can be replayed.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any

import pytest

ENV = "LLMOPS_TEST_SHUFFLE"


def _path(item: pytest.Item) -> list[str]:
    """The groups an item belongs to, outermost first (folders, module, classes); its own name is left out."""
    parts = re.split(r"/|::", item.nodeid.split("[")[0])
    return parts[:-1]


def shuffled(items: list[Any], seed: int, path: Any = _path) -> list[Any]:
    """`items` reordered by `seed`, keeping each group (as `path` names them) together."""
    rng = random.Random(seed)

    def order(group: list[Any], depth: int) -> list[Any]:
        leaves = [i for i in group if len(path(i)) == depth]
        children: dict[str, list[Any]] = {}
        for item in group:
            if len(path(item)) > depth:
                children.setdefault(path(item)[depth], []).append(item)
        units: list[list[Any]] = [[leaf] for leaf in leaves] + [order(g, depth + 1) for g in children.values()]
        rng.shuffle(units)
        return [item for unit in units for item in unit]

    return order(list(items), 0)


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = os.environ.get(ENV)
    return f"test order shuffled with {ENV}={seed}" if seed else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seed = os.environ.get(ENV)
    if seed:
        items[:] = shuffled(items, int(seed))
