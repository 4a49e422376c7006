"""The shuffled order of `make test-repeat`: reproducible per seed, different across seeds, groups kept whole."""

from __future__ import annotations

from tests.support.shuffle import shuffled

IDS = [
    f"{top}/{pkg}/test_{mod}.py::test_{n}"
    for top in ("services", "tests")
    for pkg in ("a", "b", "c")
    for mod in ("x", "y")
    for n in range(4)
]


def path(nodeid: str) -> list[str]:
    return nodeid.replace("::", "/").split("/")[:-1]


def test_same_seed_same_order_other_seed_other_order() -> None:
    first, again, other = shuffled(IDS, 1, path), shuffled(IDS, 1, path), shuffled(IDS, 2, path)
    assert first == again and sorted(first) == sorted(IDS)
    assert other != first


def test_each_module_and_package_stays_together() -> None:
    order = shuffled(IDS, 7, path)
    for level in (1, 2, 3):  # top folder, package, module
        groups = ["/".join(path(i)[:level]) for i in order]
        runs = [g for k, g in enumerate(groups) if k == 0 or groups[k - 1] != g]
        assert len(runs) == len(set(runs)), f"a group at depth {level} was split: {runs}"
