"""Export labeled and positively rated examples as a chat JSONL fine-tuning dataset, and register it."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from services.feedback.auth import Principal
from services.feedback.redact import redact
from services.feedback.schemas import ExportIn
from services.feedback.store.db import Row
from services.feedback.store.labeling import add_dataset, export_candidates, set_dataset_registration
from services.feedback.store.store import StorageFull, Store

log = logging.getLogger("llmops.feedback.datasets")
REGISTRY_NAME_MAX = 128  # the registry's limit on dataset names


class DatasetRegistrar(Protocol):
    """Somewhere a dataset version is recorded (the registry service, or MLflow)."""

    name: str

    async def register(self, record: dict[str, Any], path: Path) -> str:
        """Register the file under record['registry_name']; returns a reference (URI or id) to that version."""
        ...


def to_messages(row: Row) -> list[dict[str, str]] | None:
    """Chat messages of one training example: the prompt's messages, then the answer to learn."""
    answer = row["corrected"] or (row["response"] if row["source"] == "feedback" or row["label"] == "good" else None)
    if not answer or row["prompt"] is None:
        return None  # no target answer, or the prompt was not logged (team policy)
    prompt = orjson.loads(row["prompt"])
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif prompt and all(isinstance(p, str) for p in prompt):
        if len(prompt) != 1:
            return None  # a batch of completions prompts has no single answer to pair with
        messages = [{"role": "user", "content": prompt[0]}]
    else:
        messages = [
            {"role": str(m.get("role", "user")), "content": m["content"]}
            for m in prompt
            if isinstance(m, dict)
            and isinstance(m.get("content"), str)
            and m.get("role") in ("system", "user", "assistant")
        ]
    if not messages:
        return None
    return [*messages, {"role": "assistant", "content": answer}]


def build_rows(candidates: list[Row]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Redact, drop unusable rows, deduplicate on the redacted conversation (first one wins)."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    skipped = {"no_answer_or_prompt": 0, "duplicate": 0, "pii_redactions": 0}
    for cand in candidates:
        messages = to_messages(cand)
        if messages is None:
            skipped["no_answer_or_prompt"] += 1
            continue
        clean = []
        for m in messages:
            text, n = redact(m["content"])
            skipped["pii_redactions"] += n
            clean.append({"role": m["role"], "content": text})
        key = hashlib.sha256(
            orjson.dumps([(m["role"], " ".join(m["content"].split()).lower()) for m in clean])
        ).hexdigest()
        if key in seen:
            skipped["duplicate"] += 1
            continue
        seen.add(key)
        rows.append({"messages": clean})
    return rows, skipped


def _write_atomically(path: Path, rows: list[dict[str, Any]]) -> str:
    """Write the JSONL via a temp file and rename, so a reader never sees half a dataset; returns sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_bytes(data)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # no half-written file left behind
        if exc.errno == errno.ENOSPC:
            raise StorageFull(f"no space left in the export folder {path.parent}") from exc
        raise
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def registry_name(team: str | None, name: str) -> str:
    """The dataset's name in the registry: `<team>--<name>` for a team, `name` alone for an all-teams export.

    Export names may not contain `--` and team names start with a letter or digit, so the last `--` splits a
    registry name back unambiguously and two teams' datasets of the same name never share a version line.
    """
    return name if team is None else f"{team}--{name}"


class ExportRefused(ValueError):
    """The export cannot be made as asked (400)."""


class DatasetExporter:
    """Selects, cleans, writes and registers a dataset version."""

    def __init__(self, store: Store, export_dir: Path, registrar: DatasetRegistrar | None) -> None:
        self.store, self.export_dir, self.registrar = store, export_dir, registrar

    async def export(self, spec: ExportIn, who: Principal) -> dict[str, Any]:
        """Run one export for the caller: a team key exports its own team; the admin any team (spec.team) or all."""
        team = who.team if who.team is not None else spec.team
        dataset = registry_name(team, spec.name)
        if len(dataset) > REGISTRY_NAME_MAX:
            raise ExportRefused(f"'{dataset}' (team prefix included) is longer than {REGISTRY_NAME_MAX} characters")
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("team", team), ("model", spec.model), ("endpoint", spec.endpoint)):
            if value is not None:
                where.append(f"r.{column} = ?")
                params.append(value)
        if spec.since is not None:
            where.append("r.ts >= ?")
            params.append(spec.since)
        if spec.until is not None:
            where.append("r.ts < ?")
            params.append(spec.until)
        candidates = await self.store.read(export_candidates, where, params, spec.min_rating)
        candidates = [
            c
            for c in candidates
            if (c["source"] == "label" and spec.include_labeled)
            or (c["source"] == "feedback" and spec.include_feedback)
        ]
        rows, skipped = build_rows(candidates)
        filters = spec.model_dump(exclude={"name", "register_dataset"}) | {"team": team}
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        # Files live under the team's own folder; '_all' cannot be a team name (teams start with a letter or digit).
        relative = Path(team or "_all") / spec.name / f"{spec.name}-{stamp}-{os.getpid()}-{time.monotonic_ns()}.jsonl"
        path = self.export_dir / relative
        sha = _write_atomically(path, rows)
        record = {
            "scope": team or "",
            "name": spec.name,
            "created_at": time.time(),
            "team": team,
            "created_by": who.name,
            "sha256": sha,
            "rows": len(rows),
            "path": relative.as_posix(),  # relative to the export folder: replies never show server paths
            "filters": orjson.dumps(filters).decode(),
            "registered_in": "local",
            "registry_ref": None,
        }
        record = await self.store.write(add_dataset, record)
        if spec.register_dataset and self.registrar is not None:
            try:
                ref = await self.registrar.register(record | {"registry_name": dataset}, path)
            except Exception as exc:  # the file and local record stay valid; registration can be retried
                log.error("dataset registration failed", extra={"registrar": self.registrar.name, "error": repr(exc)})
                skipped["registration_failed"] = 1
            else:
                record |= {"registered_in": self.registrar.name, "registry_ref": ref}
                await self.store.write(
                    set_dataset_registration,
                    record["scope"],
                    record["name"],
                    record["version"],
                    self.registrar.name,
                    ref,
                )
        out = {k: v for k, v in record.items() if k not in ("scope", "id")}
        return out | {"registry_name": dataset, "filters": filters, "skipped": skipped}
