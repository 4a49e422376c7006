"""Run one exercise's check: `python exercises/check.py 7` (what `make check-exercise N=7` calls).

N is the module number (1-8) or `bonus` (also `9`). Extra arguments go to the exercise's check.py,
e.g. `--work solutions/07-pii-detector` to check the reference solution.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def find(n: str) -> Path:
    """The folder of exercise N (`7`, `07`, `bonus` or `9`)."""
    key = "09" if n.lower() in {"bonus", "9", "09"} else f"{int(n):02d}" if n.isdigit() else n
    matches = sorted(p for p in HERE.glob(f"{key}-*") if (p / "check.py").exists())
    if not matches:
        names = ", ".join(p.name for p in sorted(HERE.glob("[0-9][0-9]-*")))
        sys.exit(f"no exercise {n!r}; there are: {names}")
    return matches[0]


def main() -> int:
    """Dispatch to exercises/<NN>-<slug>/check.py with the remaining arguments."""
    if len(sys.argv) < 2:
        sys.exit("usage: python exercises/check.py N [--work DIR]   (N = 1..8 or bonus)")
    folder = find(sys.argv[1])
    return subprocess.call([sys.executable, str(folder / "check.py"), *sys.argv[2:]])


if __name__ == "__main__":
    sys.exit(main())
