"""Policies: which detectors run on input and output, their thresholds and actions, and the fail mode.

The YAML file (see policies.yaml and the README) is validated in full at load time, so a typo fails
the service start, not a request. A policy may `extends` another; detector sections are merged key by key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Action = Literal["allow", "flag", "redact", "block"]
INPUT_DETECTORS = ("length", "injection", "secrets", "pii", "denylist", "topics")
OUTPUT_DETECTORS = ("length", "canary", "secrets", "pii", "denylist", "json_schema", "groundedness", "topics")


class DetectorPolicy(BaseModel):
    """Settings of one detector inside a policy; detector-specific options are kept as extra keys."""

    model_config = ConfigDict(extra="allow")

    enabled: bool = True
    action: Action = Field("block", description="Action for this detector's findings.")
    actions: dict[str, Action] = Field(
        default_factory=dict, description="Per entity or category override, e.g. {EMAIL: redact, CREDIT_CARD: block}."
    )
    min_score: float = Field(0.0, ge=0, le=1, description="Findings scoring below this are dropped.")

    @field_validator("actions")
    @classmethod
    def _upper_keys(cls, value: dict[str, Action]) -> dict[str, Action]:
        return {k if k.islower() else k.upper(): v for k, v in value.items()}


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
    input: dict[str, DetectorPolicy] = Field(default_factory=dict)
    output: dict[str, DetectorPolicy] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _known_input(cls, value: dict[str, DetectorPolicy]) -> dict[str, DetectorPolicy]:
        return _check_names(value, INPUT_DETECTORS, "input")

    @field_validator("output")
    @classmethod
    def _known_output(cls, value: dict[str, DetectorPolicy]) -> dict[str, DetectorPolicy]:
        return _check_names(value, OUTPUT_DETECTORS, "output")

    def public(self) -> dict[str, Any]:
        """The effective policy as the API shows it."""
        return self.model_dump(mode="json")


def _check_names(value: dict[str, DetectorPolicy], known: tuple[str, ...], where: str) -> dict[str, DetectorPolicy]:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"unknown {where} detector(s) {unknown}; known: {list(known)}")
    for name, det in value.items():
        for raw in (det.model_extra or {}).get("patterns") or ():
            try:
                re.compile(raw)
            except re.error as exc:
                raise ValueError(f"{where}.{name}: bad pattern {raw!r}: {exc}") from exc
    # Run in the canonical order (cheap and decisive first), whatever order the file used.
    return {k: value[k] for k in known if k in value}


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
                spec = dict(specs[name] or {})
                parent = spec.pop("extends", None)
                resolved[name] = _merge(resolve(parent, (*chain, name)), spec) if parent else spec
            return resolved[name]

        try:
            policies = {name: Policy(name=name, **resolve(name)) for name in specs}
            teams = {team: TeamPolicy(**spec) for team, spec in (raw.get("teams") or {}).items()}
        except (ValidationError, TypeError) as exc:
            raise PolicyError(f"invalid policy file {source}: {exc}") from exc
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
