"""Prompt templates in MLflow's prompt registry: versions, aliases and rendering with variables."""

from __future__ import annotations

from typing import Any, cast

from mlflow.entities.model_registry import PromptVersion as MlflowPromptVersion

from services.registry.auth import Principal
from services.registry.context import Context
from services.registry.drift import DriftDetector
from services.registry.errors import RegistryError
from services.registry.schemas import PromptVersionCreate

T = "llmops."


def prompt_to_dict(pv: MlflowPromptVersion, aliases: list[str]) -> dict[str, Any]:
    """Our view of an MLflow prompt version."""
    tags = dict(pv.tags or {})
    return {
        "name": pv.name,
        "version": str(pv.version),
        "template": pv.template,
        "variables": sorted(pv.variables),
        "aliases": sorted(aliases),
        "commit_message": pv.commit_message or None,
        "eval_results": {k.removeprefix(T + "eval."): float(v) for k, v in tags.items() if k.startswith(T + "eval.")},
        "tags": {k: v for k, v in tags.items() if not k.startswith((T, "mlflow.", "_mlflow"))},
        "created_by": tags.get(T + "created_by"),
        "created_at": (pv.creation_timestamp or 0) / 1000,
    }


class PromptService:
    """Register, read, resolve and render prompt versions."""

    def __init__(self, ctx: Context, drift: DriftDetector | None = None) -> None:
        self.ctx = ctx
        self.ml = ctx.mlflow
        self.client = ctx.mlflow.client
        self.drift = drift

    def _require(self, name: str) -> None:
        if self.ml.call(self.client.get_prompt, name) is None:
            raise RegistryError(404, "prompt_not_found", f"prompt {name!r} does not exist")

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version for one prompt (404 when the prompt does not exist).

        MLflow's prompt API exposes aliases per version only, so this costs one call per version.
        """
        self._require(name)
        out: dict[str, str] = {}
        for v in self._versions(name):
            full = self.ml.call(self.client.get_prompt_version, name, v.version)
            out.update({a: str(v.version) for a in (full.aliases or [])})
        return out

    def _versions(self, name: str) -> list[MlflowPromptVersion]:
        return list(self.ml.call(self.client.search_prompt_versions, name, max_results=1000))

    def register(self, actor: Principal, name: str, body: PromptVersionCreate) -> dict[str, Any]:
        """A new version of `name` (created on first use); the same template as the latest version is a 409."""
        template: str | list[dict[str, Any]] = (
            body.template if isinstance(body.template, str) else [m.model_dump() for m in body.template]
        )
        with self.ctx.object_lock(f"prompt/{name}"):
            if self.ml.find(self.client.get_registered_model, name) is not None:
                raise RegistryError(409, "name_in_use", f"{name!r} is a model; pick another prompt name")
            exists = self.ml.call(self.client.get_prompt, name) is not None
            if exists:
                versions = self._versions(name)
                latest = max(versions, key=lambda v: int(v.version), default=None)
                if latest is not None and latest.template == template:
                    raise RegistryError(
                        409,
                        "duplicate_version",
                        f"prompt {name!r} version {latest.version} already has this template",
                        existing_version=str(latest.version),
                    )
            tags = body.tags | {f"{T}eval.{k}": repr(v) for k, v in body.eval_results.items()}
            tags[T + "created_by"] = actor.name
            pv = self.ml.call(
                self.client.register_prompt, name, template, commit_message=body.commit_message, tags=tags
            )
            try:
                with self.ctx.store.transaction() as conn:
                    entry = self.ctx.audit.append(
                        conn,
                        actor=actor.name,
                        action="prompt_version.register",
                        object_type="prompt",
                        object_id=f"prompt/{name}/{pv.version}",
                        reason=body.commit_message,
                        after={"template": template, "tags": tags},
                    )
            except BaseException:
                self._undo(name, pv.version, not exists)
                raise
        self.ctx.after_commit(entry)
        self.ctx.cache.invalidate(("prompt", name))
        return prompt_to_dict(self.ml.call(self.client.get_prompt_version, name, pv.version), [])

    def _undo(self, name: str, version: int | str, created: bool) -> None:
        try:
            self.client.delete_prompt_version(name, str(version))
            if created:
                self.client.delete_prompt(name)
        except Exception:  # the original error is what the caller must see
            self.ctx.metrics.mirror_failures.inc()

    def get_version(self, name: str, version: str) -> dict[str, Any]:
        """One version with its template, variables and aliases."""
        self._require(name)
        pv = self.ml.find(self.client.get_prompt_version, name, version)
        if pv is None:
            raise RegistryError(404, "version_not_found", f"prompt {name!r} has no version {version}")
        return prompt_to_dict(pv, list(pv.aliases or []))

    def resolve(self, name: str, alias: str) -> dict[str, Any]:
        """The version an alias points at (409 `tamper_detected` when MLflow disagrees with the audit log)."""
        self._require(name)
        if self.drift is not None:
            self.drift.guard("prompt", name)
        pv = self.ml.find(self.client.get_prompt_version_by_alias, name, alias)
        if pv is None:
            raise RegistryError(404, "alias_not_found", f"prompt {name!r} has no alias {alias!r}")
        return prompt_to_dict(pv, list(pv.aliases or []))

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """All versions, newest first."""
        self._require(name)
        out = [self.get_version(name, str(pv.version)) for pv in self._versions(name)]
        return sorted(out, key=lambda p: -int(p["version"]))

    def list_prompts(self) -> list[dict[str, Any]]:
        """Every prompt with its aliases and latest version."""
        out = []
        for p in self.ml.call(self.client.search_prompts, max_results=1000):
            aliases = self.aliases(p.name)
            latest = max((int(v) for v in aliases.values()), default=None)
            latest = max([int(v.version) for v in self._versions(p.name)], default=latest)
            out.append({"name": p.name, "aliases": aliases, "latest_version": str(latest) if latest else None})
        return sorted(out, key=lambda p: p["name"])

    def render(self, name: str, version: str | None, alias: str | None, variables: dict[str, Any]) -> dict[str, Any]:
        """Fill the template; a missing variable is a 400 that names every missing one."""
        pv = self.get_version(name, version) if version else self.resolve(name, alias or "production")
        missing = sorted(set(pv["variables"]) - set(variables))
        if missing:
            raise RegistryError(
                400,
                "missing_variables",
                f"prompt {name!r} version {pv['version']} needs variables {missing}",
                missing=missing,
                required=pv["variables"],
            )
        values = {k: str(v) for k, v in variables.items() if k in pv["variables"]}
        rendered = cast(Any, MlflowPromptVersion)(name, int(pv["version"]), pv["template"]).format(**values)
        if isinstance(rendered, str):
            return {"name": name, "version": pv["version"], "text": rendered}
        return {"name": name, "version": pv["version"], "messages": rendered}
