"""Policies: which detectors run on input, content and output, their settings and actions, the fail mode.

The YAML file (see policies.yaml and the README) is validated in full at load time, with typed settings per
detector (detector_config.py), so a typo fails the service start, naming the file, the key and the closest
valid name. A policy may `extends` another; detector sections are merged key by key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SerializeAsAny, ValidationError

from services.guardrails.detector_config import NER_PII, DetectorPolicy, explain, suggest
from services.guardrails.detectors.loader import DETECTORS

__all__ = ["INPUT_DETECTORS", "OUTPUT_DETECTORS", "DetectorPolicy", "Mode", "Policy", "PolicyError", "PolicySet"]

Mode = Literal["input", "content", "output"]
# The detector names each section accepts, with their settings classes, in run order: from the registry.
INPUT_DETECTORS: dict[str, type[DetectorPolicy]] = {n: d.settings for n, d in DETECTORS.items() if "input" in d.modes}
OUTPUT_DETECTORS: dict[str, type[DetectorPolicy]] = {n: d.settings for n, d in DETECTORS.items() if "output" in d.modes}
# Content (documents, retrieved chunks, tool results) runs the input detectors under its own settings.
SECTION_DETECTORS = {"input": INPUT_DETECTORS, "content": INPUT_DETECTORS, "output": OUTPUT_DETECTORS}
Role = Literal["system", "developer", "user", "assistant", "tool"]
# Which mode judges each role of a chat request. Tool results are what the model reads (indirect injection);
# system and developer messages stay in input mode: measured in bench/results/guardrails_roles.md, a system
# prompt that carries documents is blocked *more* often in content mode (its own instructions read as ones
# planted in a document), and direct injections put there are caught less often. Documents inside a system
# message are judged as content only when a platform service marks them as retrieved context (see the README).
DEFAULT_ROLES: dict[Role, Literal["input", "content"]] = {
    "system": "input",
    "developer": "input",
    "user": "input",
    "assistant": "input",
    "tool": "content",
}


class Policy(BaseModel):
    """One named policy, after `extends` has been resolved."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    fail_mode: Literal["open", "closed"] = Field(
        "closed", description="closed: a failing detector blocks; open: it is skipped (and reported)."
    )
    timeout_ms: int = Field(250, ge=1, description="Budget of one check; also the gateway's call timeout.")
    stop_on_block: bool = Field(True, description="Skip the remaining detectors once one finding blocks.")
    input: dict[str, SerializeAsAny[DetectorPolicy]] = Field(
        default_factory=dict, description="What users (any role) say."
    )
    content: dict[str, SerializeAsAny[DetectorPolicy]] | None = Field(
        None, description="What the model reads: documents, chunks, tool results. Absent: the input section."
    )
    output: dict[str, SerializeAsAny[DetectorPolicy]] = Field(
        default_factory=dict, description="What the model answers."
    )
    roles: dict[Role, Literal["input", "content"]] = Field(
        default_factory=lambda: dict(DEFAULT_ROLES),
        description="The mode each role of a chat request is checked in (roles not named keep the default: "
        "tool -> content, every other role -> input). Marked retrieved context is always content.",
    )
    # (name, settings, settings as the dict detectors read), per mode, in run order: built once, read per check.
    _plan: dict[str, list[tuple[str, DetectorPolicy, dict[str, Any]]]] = PrivateAttr(default_factory=dict)
    _fingerprint: str = PrivateAttr("")

    def model_post_init(self, context: Any) -> None:
        """Precompute the run plan so a check with many messages does not re-serialise settings."""
        self.roles = {**DEFAULT_ROLES, **self.roles}
        self._fingerprint = hashlib.blake2b(self.model_dump_json().encode(), digest_size=16).hexdigest()
        for mode in ("input", "content", "output"):
            section = self.section(mode)
            self._plan[mode] = [(name, cfg, cfg.model_dump()) for name, cfg in section.items() if cfg.enabled]

    def role_mode(self, role: str) -> Literal["input", "content"]:
        """The mode a message of this role is checked in."""
        return self.roles.get(role, "input")  # type: ignore[call-overload]  # every role is in the map

    def section(self, mode: Mode) -> dict[str, DetectorPolicy]:
        """The detector settings of a mode (content falls back to input)."""
        if mode == "content":
            return self.input if self.content is None else self.content
        return self.input if mode == "input" else self.output

    @property
    def fingerprint(self) -> str:
        """A digest of every setting: equal policies judge a text the same way (the verdict cache's key)."""
        return self._fingerprint

    def plan(self, mode: Mode) -> list[tuple[str, DetectorPolicy, dict[str, Any]]]:
        """Enabled detectors of a mode in run order, with their settings."""
        return self._plan[mode]

    def reads_names(self, mode: Mode) -> bool:
        """Whether the mode runs the NER model (pii entities PERSON/LOCATION/ORGANIZATION): tens of ms, not one."""
        return any(set(config.get("entities") or ()) & set(NER_PII) for name, _, config in self._plan[mode])

    def public(self) -> dict[str, Any]:
        """The effective policy as the API shows it."""
        return self.model_dump(mode="json")


def _section(raw: Any, mode: str, where: str) -> dict[str, DetectorPolicy]:
    """Validate one detector section with its typed settings, in the canonical run order."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be a mapping of detector name -> settings, got {type(raw).__name__}")
    known = SECTION_DETECTORS[mode]
    out: dict[str, DetectorPolicy] = {}
    for name, spec in raw.items():
        if name not in known:
            raise PolicyError(f"{where}: unknown {mode} detector {name!r}{suggest(name, known)}; known: {list(known)}")
        if spec is not None and not isinstance(spec, dict):
            raise PolicyError(f"{where}.{name}: must be a mapping of settings, got {spec!r}")
        try:
            out[name] = known[name].model_validate(spec or {})
        except ValidationError as exc:
            raise PolicyError(explain(exc, known[name], f"{where}.{name}")) from exc
    # Run in the canonical order (cheap and decisive first), whatever order the file used.
    return {k: out[k] for k in known if k in out}


class TeamPolicy(BaseModel):
    """Which policy a team uses, with per-project overrides."""

    model_config = ConfigDict(extra="forbid")

    policy: str
    projects: dict[str, str] = Field(default_factory=dict)


class PolicyError(Exception):
    """The policy file is invalid; raised at load time."""


class UnknownPolicy(Exception):
    """A request named a policy the file does not define."""


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


_TOP_KEYS = frozenset({"default_policy", "policies", "teams"})
_SECTIONS = ("input", "content", "output")


def _policy(name: str, spec: dict[str, Any], source: str) -> Policy:
    """One resolved policy: detector sections typed one by one (to name the key), then the policy itself."""
    where = f"{source}: policies.{name}"
    spec = dict(spec)
    sections = {mode: _section(spec.pop(mode), mode, f"{where}.{mode}") for mode in _SECTIONS if mode in spec}
    try:
        return Policy.model_validate({"name": name, **spec, **sections})
    except ValidationError as exc:
        raise PolicyError(explain(exc, Policy, where)) from exc


@dataclass(frozen=True)
class PolicySet:
    """All policies of the file, and the team/project mapping onto them."""

    policies: dict[str, Policy]
    default: str
    teams: dict[str, TeamPolicy]
    source: str

    @classmethod
    def load(cls, path: Path) -> PolicySet:
        """Parse and validate the YAML file; raises PolicyError with a readable message."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> PolicySet:
        """Build from an already-parsed mapping (tests use this)."""
        specs: dict[str, dict[str, Any]] = raw.get("policies") or {}
        resolved: dict[str, dict[str, Any]] = {}

        def resolve(name: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
            if name in chain:
                raise PolicyError(f"policy inheritance cycle: {' -> '.join((*chain, name))}")
            if name not in specs:
                raise PolicyError(f"policy {name!r} is referenced but not defined")
            if name not in resolved:
                if not isinstance(specs[name] or {}, dict):
                    raise PolicyError(f"{source}: policies.{name} must be a mapping")
                spec = dict(specs[name] or {})
                parent = spec.pop("extends", None)
                resolved[name] = _merge(resolve(parent, (*chain, name)), spec) if parent else spec
            return resolved[name]

        unknown_top = sorted(set(raw) - _TOP_KEYS)
        if unknown_top:
            raise PolicyError(f"{source}: unknown key {unknown_top[0]!r}{suggest(unknown_top[0], _TOP_KEYS)}")
        policies = {name: _policy(name, resolve(name), source) for name in specs}
        teams: dict[str, TeamPolicy] = {}
        for team, spec in (raw.get("teams") or {}).items():
            try:
                teams[team] = TeamPolicy.model_validate(spec)
            except ValidationError as exc:
                raise PolicyError(f"{source}: {explain(exc, TeamPolicy, f'teams.{team}')}") from exc
        default = raw.get("default_policy", "default")
        for ref in [
            default,
            *(t.policy for t in teams.values()),
            *(p for t in teams.values() for p in t.projects.values()),
        ]:
            if ref not in policies:
                raise PolicyError(f"policy {ref!r} is referenced but not defined in {source}")
        return cls(policies=policies, default=default, teams=teams, source=source)

    def resolve(self, team: str | None, project: str | None, override: str | None = None) -> Policy:
        """Explicit override, else the team's project policy, else the team's policy, else the default."""
        if override:
            if override not in self.policies:
                raise UnknownPolicy(override)
            return self.policies[override]
        team_policy = self.teams.get(team or "")
        if team_policy is None:
            return self.policies[self.default]
        return self.policies[team_policy.projects.get(project or "", team_policy.policy)]
