"""Technical documentation as clean content-mode negatives, from committed snapshots (reproducible training).

Why: every clean *document* the content model learned from was prose (XQuAD paragraphs, e-mails, tool
responses). Documentation looks different: Markdown tables and headings, inline code and code blocks,
imperative sentences addressed to "you" ("run `make up`, then set the token"), and in security pages the very
words attacks use ("system prompt", "instructions", "ignore"). With no such text among the negatives the model
read documentation style itself as the signal, and blocked a third of this repository's own docs/ passages
when RAG checked them. Two sources of that genre, written by other people, each under a permissive licence and
cut into passages the way a retriever cuts documents:

  * `package-docs`: the package description (PyPI's long description) of Python distributions;
  * `system-docs`: READMEs, tutorials and Markdown manuals of Debian packages whose copyright file names only
    permissive licences (podman's and buildah's tutorials, redis, libxml2...), npm's bundled packages'
    READMEs (ISC/MIT), and the docstrings of a fixed list of Python standard-library modules (PSF).

Training reads the snapshots in services/guardrails/data/ (`read_snapshot`), never the machine: the venv, the
Debian packages and the Python version change, the training data does not. Each record keeps the package
name, version, licence, where the text came from and its sha256 (the artifact's `lineage`). Rebuild a
snapshot on purpose (and commit it) with `python -m services.guardrails.training.package_docs --write`.

This repository's docs/ are never read here: they stay a held-out evaluation set (bench/guardrails_docs.py),
and so are the man pages (`man_pages.py`: many licences, evaluation only).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import importlib.metadata as md
import inspect
import io
import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

SOURCE = "package-docs"
SYSTEM_SOURCE = "system-docs"
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SNAPSHOTS = {SOURCE: "package_docs.jsonl.gz", SYSTEM_SOURCE: "system_docs.jsonl.gz"}
MAX_SNAPSHOT_BYTES = 1_500_000  # per snapshot file: the repository carries them
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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- system-docs: Debian package documentation, npm READMEs, Python standard-library docstrings -------------

_DEBIAN_PERMISSIVE = re.compile(
    r"^(?:Expat|MIT(?:-\d)?|BSD(?:-[234]-clause)?(?:-[\w-]+)?|ISC|Apache-2\.0|Zlib|PSF-2|X11|0BSD|Unlicense|CC0-1\.0)$",
    re.I,
)
_DEBIAN_DOC = re.compile(r"(?i)^(?:readme(?:\.(?:md|rst|markdown|txt))?|[\w.-]+\.(?:md|rst))(?:\.gz)?$")
_SKIP_DEBIAN_DOC = re.compile(r"(?i)debian|changelog|security\.md|code_of_conduct|contributing")
# Fixed list (the snapshot does not depend on what a machine has): modules whose docstrings are prose, and
# which import without side effects.
STDLIB_MODULES = (
    "argparse", "asyncio", "base64", "collections", "configparser", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools", "gzip", "hashlib",
    "heapq", "hmac", "http.client", "http.server", "imaplib", "inspect", "ipaddress", "itertools", "json",
    "logging", "mimetypes", "os", "pathlib", "pdb", "pickle", "queue", "random", "secrets", "shlex", "shutil",
    "smtplib", "socket", "sqlite3", "ssl", "statistics", "string", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "venv",
    "warnings", "weakref", "zipfile",
)  # fmt: skip
STDLIB_PER_MODULE = 12


def _read_doc(path: Path) -> str:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def debian_docs(root: Path = Path("/usr/share/doc")) -> list[dict[str, Any]]:
    """READMEs and Markdown manuals of Debian packages whose machine-readable copyright names only permissive
    licences (every `License:` line)."""
    out = []
    for pkg in sorted(p.name for p in root.iterdir()) if root.is_dir() else []:
        copyright_file = root / pkg / "copyright"
        if not copyright_file.is_file():
            continue
        licences = sorted(set(re.findall(r"^License:\s*(\S.*?)\s*$", copyright_file.read_text(errors="replace"), re.M)))
        if not licences or not all(_DEBIAN_PERMISSIVE.match(lic) for lic in licences):
            continue
        files = sorted(
            f
            for f in (root / pkg).iterdir()
            if f.is_file() and _DEBIAN_DOC.match(f.name) and not _SKIP_DEBIAN_DOC.search(f.name)
        )
        body = "\n\n".join(_read_doc(f) for f in files)
        chunks = _even(passages(body), MAX_PER_PACKAGE)
        if chunks:
            version = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True, check=False
            ).stdout.strip()
            origin = ", ".join(str(f) for f in files)
            out.append({"name": f"debian:{pkg}", "version": version or None, "licence": "; ".join(licences),
                        "origin": origin, "sha256": _digest(body), "passages": chunks})  # fmt: skip
    return out


def npm_docs(root: Path = Path("/usr/lib/node_modules")) -> list[dict[str, Any]]:
    """README of every installed npm package (npm's own bundled dependencies) under a permissive licence."""
    out = []
    seen: set[str] = set()
    for manifest in sorted(root.glob("**/package.json")) if root.is_dir() else []:
        folder = manifest.parent
        readmes = sorted(f for f in folder.iterdir() if f.name.lower().startswith("readme") and f.is_file())
        try:
            meta = json.loads(manifest.read_text())
        except (ValueError, UnicodeDecodeError):
            continue
        name, licence = meta.get("name"), meta.get("license")
        if not readmes or not isinstance(name, str) or name in seen or not isinstance(licence, str):
            continue
        if not permissive(licence):
            continue
        seen.add(name)
        body = _read_doc(readmes[0])
        chunks = _even(passages(body), MAX_PER_PACKAGE)
        if chunks:
            out.append({"name": f"npm:{name}", "version": meta.get("version"), "licence": licence,
                        "origin": str(readmes[0]), "sha256": _digest(body), "passages": chunks})  # fmt: skip
    return out


def stdlib_docs() -> list[dict[str, Any]]:
    """Docstrings of STDLIB_MODULES: the module's, then each public class and function's (with signature)."""
    out = []
    for name in STDLIB_MODULES:
        module = importlib.import_module(name)
        parts = [inspect.getdoc(module) or ""]
        for attr in sorted(getattr(module, "__all__", None) or dir(module)):
            obj = getattr(module, attr, None)
            if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if getattr(obj, "__module__", "") != module.__name__:
                continue
            doc = inspect.getdoc(obj)
            if doc and len(doc) >= MIN_CHARS:
                try:
                    sig = str(inspect.signature(obj))
                except (TypeError, ValueError):
                    sig = "(...)"
                parts.append(f"{attr}{sig}\n\n{doc}")
        body = "\n\n".join(p for p in parts if p)
        chunks = _even(passages(body), STDLIB_PER_MODULE)
        if chunks:
            out.append({"name": f"python-stdlib:{name}", "version": platform.python_version(), "licence": "PSF-2.0",
                        "origin": "docstrings", "sha256": _digest(body), "passages": chunks})  # fmt: skip
    return out


def collect_system() -> list[dict[str, Any]]:
    """The `system-docs` records, sorted by name."""
    return sorted(debian_docs() + npm_docs() + stdlib_docs(), key=lambda r: r["name"])


# --- snapshots ----------------------------------------------------------------------------------------------


def snapshot_path(source: str, data_dir: Path = DATA_DIR) -> Path:
    """Where the committed snapshot of `source` lives."""
    return data_dir / SNAPSHOTS[source]


def write_snapshot(source: str, records: list[dict[str, Any]], data_dir: Path = DATA_DIR) -> Path:
    """One JSON record per line, sorted, gzip without a timestamp: the same records give the same bytes."""
    ordered = sorted(records, key=lambda r: r["name"])
    lines = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in ordered)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as fh:
        fh.write(lines.encode())
    path = snapshot_path(source, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return path


def read_snapshot(source: str, data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """The committed records of `source` (what training reads)."""
    with gzip.open(snapshot_path(source, data_dir), "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def lineage(records: list[dict[str, Any]], source: str = SOURCE) -> dict[str, Any]:
    """What the artifact records about this source: every package used, its licence and text digest, and the
    sha256 of the snapshot file it was read from."""
    whole = hashlib.sha256("\n".join(f"{r['name']}=={r['version']}:{r['sha256']}" for r in records).encode())
    return {
        "source": source,
        "use": f"training+eval (permissive licences only; snapshot services/guardrails/data/{SNAPSHOTS[source]})",
        "snapshot_sha256": hashlib.sha256(snapshot_path(source).read_bytes()).hexdigest(),
        "packages": len(records),
        "passages": sum(len(r["passages"]) for r in records),
        "sha256": whole.hexdigest(),
        "per_package": {
            f"{r['name']}=={r['version']}": {"licence": r["licence"], "sha256": r["sha256"]} for r in records
        },
    }


def _budget(records: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Fewer passages per record (evenly spaced) until the snapshot's text fits `limit` characters."""
    cap = max(len(r["passages"]) for r in records) if records else 0
    while cap > 1 and sum(len(p) for r in records for p in r["passages"][:cap]) > limit:
        cap -= 1
    return [{**r, "passages": _even(r["passages"], cap)} for r in records]


def main() -> None:
    """Rebuild the snapshots from this machine (a deliberate, reviewed change: commit the result)."""
    parser = argparse.ArgumentParser(description="rebuild services/guardrails/data/*_docs.jsonl.gz")
    parser.add_argument("--write", action="store_true", help="write the snapshots (default: print a summary)")
    args = parser.parse_args()
    for source, records in ((SOURCE, collect()), (SYSTEM_SOURCE, collect_system())):
        records = _budget(records, 3 * MAX_SNAPSHOT_BYTES)  # ~3:1 gzip ratio on prose
        n = sum(len(r["passages"]) for r in records)
        print(f"{source}: {len(records)} packages, {n} passages")
        if args.write:
            path = write_snapshot(source, records)
            print(f"  wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
