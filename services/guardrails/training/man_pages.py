"""Man pages: a held-out technical-prose set the injection model never trains on (evaluation only).

Why: the documentation the content model trains on (`package_docs.py`: package READMEs, tutorials,
docstrings) is one genre; a check that only re-measures it would not show whether the model learned
"technical documentation is clean" or "these packages' READMEs are clean". Man pages are the same job (telling
a reader what to run, in the imperative: "Use -f to force...") written in another house style, and they are
under many licences (GPL among them), so they are read from this machine at evaluation time, never copied
into the repository and never trained on (`trainable=False`). Sampled evenly from the English section 1
pages (sorted by name, one per tool family), leaving out the tools whose Markdown manuals are in the training
snapshot (podman, buildah...), and rendered with `man` as a user reads them; a machine without man pages has
no such rows.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from services.guardrails.training.package_docs import _even, passages

SOURCE = "man-pages"
FILE = "local:/usr/share/man/man1"
MAN_DIR = Path("/usr/share/man/man1")
PAGES = 150
PER_PAGE = 10
# Tools whose documentation is in the system-docs training snapshot: their man pages would not be unseen.
_TRAINED_TOOLS = re.compile(r"^(?:podman|buildah|conmon|skopeo|redis|amqp|xmllint|xmlcatalog)")


def _render(page: Path) -> str:
    env = {**os.environ, "MANWIDTH": "90", "MAN_KEEP_FORMATTING": "0", "LC_ALL": "C.UTF-8"}
    man = subprocess.run(["man", "-l", "-P", "cat", str(page)], capture_output=True, env=env, check=False, timeout=60)
    col = subprocess.run(["col", "-bx"], input=man.stdout, capture_output=True, check=False, timeout=60)
    # man's plain layout indents everything; passages() splits on blank lines, which it keeps.
    return "\n".join(line.strip() for line in col.stdout.decode("utf-8", errors="replace").splitlines())


@functools.lru_cache(maxsize=2)  # rendering takes ~20 s; training asks twice
def collect(man_dir: Path = MAN_DIR, pages: int = PAGES) -> list[dict[str, Any]]:
    """Rendered passages of `pages` evenly spaced man pages (none when `man` or the pages are missing)."""
    if not man_dir.is_dir():
        return []
    # One page per tool family (its shortest name: `git`, not `git-am`): thousands of `gcloud_alpha_*` pages
    # would otherwise be the whole sample.
    families: dict[str, str] = {}
    for name in sorted(p.name for p in man_dir.iterdir() if p.is_file() and not _TRAINED_TOOLS.match(p.name)):
        family = re.split(r"[-_.]", name, maxsplit=1)[0]
        if family not in families or len(name) < len(families[family]):
            families[family] = name
    out = []
    for name in _even(sorted(families.values()), pages):
        try:
            text = _render(man_dir / name)
        except (OSError, subprocess.SubprocessError):
            return []  # no man(1) here
        chunks = _even(passages(text), PER_PAGE)
        if chunks:
            out.append({"name": name, "sha256": hashlib.sha256(text.encode()).hexdigest(), "passages": chunks})
    return out


def lineage(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What results record about the set: pages used and the digest of their rendered texts."""
    whole = hashlib.sha256("\n".join(f"{r['name']}:{r['sha256']}" for r in records).encode())
    return {"source": SOURCE, "use": "eval only (never trained on; many licences)", "pages": len(records),
            "passages": sum(len(r["passages"]) for r in records), "sha256": whole.hexdigest()}  # fmt: skip
