"""Technical documentation as clean content-mode negatives: the long descriptions of the installed Python packages.

Why: every clean *document* the content model learned from was prose (XQuAD paragraphs, e-mails, tool
responses). Documentation looks different: Markdown tables and headings, inline code and code blocks,
imperative sentences addressed to "you" ("run `make up`, then set the token"), and in security pages the very
words attacks use ("system prompt", "instructions", "ignore"). With no such text among the negatives the model
read documentation style itself as the signal, and blocked a third of this repository's own docs/ passages
when RAG checked them. Package READMEs are that genre, written by other people: the package description
(PyPI's long description) of every distribution installed from the lock, under a permissive licence, cut
into passages the way a retriever cuts documents.

This repository's docs/ are never read here: they stay a held-out evaluation set (bench/guardrails_docs.py).
The text is read at training time from the installed distributions (nothing is copied into the repository);
the artifact records each package's name, version, licence and the sha256 of its text (`lineage`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import re
from typing import Any

SOURCE = "package-docs"
FILE = "python-packages:long_description"
CHUNK_CHARS = 1000  # about RAG's 200-token chunks
MIN_CHARS = 120  # shorter pieces (a badge line, a lone heading) are not passages
MAX_PER_PACKAGE = 30  # evenly spaced: a long changelog must not outweigh twenty READMEs
# Permissive licences only (SPDX ids or the words a License field or classifier uses).
_PERMISSIVE = re.compile(r"\b(?:MIT|BSD|Apache|PSF|Python Software Foundation|ISC|Unlicense|0BSD|Zlib|HPND)\b", re.I)
_COPYLEFT = re.compile(r"\b(?:GPL|LGPL|AGPL|MPL|EPL|CDDL|Mozilla|General Public)\b", re.I)
_HEADING = re.compile(r"^(?:#{1,6}\s|\S.*\n[=\-~^]{3,}\s*$)", re.M)
# The platform's own packages and this project's fakes: not "other people's" documentation.
_EXCLUDED = frozenset({"llmops-common", "llmops-platform", "llmops"})


def licence_of(meta: Any) -> str:
    """The licence a distribution declares (SPDX expression, License field, or classifiers)."""
    parts = [meta.get("License-Expression") or "", (meta.get("License") or "").split("\n")[0][:80]]
    parts += [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return "; ".join(p for p in parts if p.strip())


def permissive(licence: str) -> bool:
    """A licence that is permissive (and names no copyleft licence)."""
    return bool(_PERMISSIVE.search(licence)) and not _COPYLEFT.search(licence)


def passages(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Paragraphs packed up to `size` characters; a heading starts a new passage (as RAG's chunker does)."""
    out: list[str] = []
    current = ""
    for para in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        para = para.strip("\n")
        if not para.strip():
            continue
        while len(para) > size:  # a long code block or paragraph: hard cut
            if current:
                out.append(current)
                current = ""
            out.append(para[:size])
            para = para[size:]
        if current and (len(current) + len(para) + 2 > size or _HEADING.match(para)):
            out.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return [p.strip() for p in out if len(p.strip()) >= MIN_CHARS]


def _even(items: list[str], cap: int) -> list[str]:
    if len(items) <= cap:
        return items
    step = (len(items) - 1) / (cap - 1)
    return [items[round(i * step)] for i in range(cap)]


def collect() -> list[dict[str, Any]]:
    """One record per permissively licensed installed distribution with a long description, sorted by name."""
    seen: set[str] = set()
    out = []
    for dist in md.distributions():
        meta: Any = dist.metadata  # an email.message.Message at run time (the protocol type lacks .get)
        name = (meta.get("Name") or "").lower()
        if not name or name in seen or name in _EXCLUDED:
            continue
        seen.add(name)
        body = (meta.get_payload() if hasattr(meta, "get_payload") else None) or meta.get("Description") or ""
        licence = licence_of(meta)
        if len(body) < 2 * MIN_CHARS or not permissive(licence):
            continue
        chunks = _even(passages(body), MAX_PER_PACKAGE)
        if chunks:
            digest = hashlib.sha256(body.encode()).hexdigest()
            out.append({"name": name, "version": meta.get("Version"), "licence": licence, "sha256": digest,
                        "passages": chunks})  # fmt: skip
    return sorted(out, key=lambda r: r["name"])


def lineage(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the artifact records about this source: every package used, its licence and text digest."""
    whole = hashlib.sha256("\n".join(f"{r['name']}=={r['version']}:{r['sha256']}" for r in records).encode())
    return {
        "source": SOURCE,
        "use": "training+eval (permissive licences only; read from the installed distributions)",
        "packages": len(records),
        "passages": sum(len(r["passages"]) for r in records),
        "sha256": whole.hexdigest(),
        "per_package": {
            f"{r['name']}=={r['version']}": {"licence": r["licence"], "sha256": r["sha256"]} for r in records
        },
    }
