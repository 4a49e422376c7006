"""The route table (public model -> ordered deployments), deployment choice, and circuit breakers."""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from services.gateway.pricing import Price
from services.gateway.routes_config import CacheFields, DeploymentFields, RoutesFile, describe

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str) -> str:
    """Expand ${VAR} and ${VAR:-default} so one routes file serves laptop, compose and Kubernetes."""
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), m.group(2) or ""), text)


class CircuitBreaker:
    """closed -> open after `threshold` consecutive failures; after `cooldown_s` one probe (half-open) decides."""

    CLOSED, HALF_OPEN, OPEN = 0, 1, 2

    def __init__(self, threshold: int, cooldown_s: float, clock: Any = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> int:
        """Current state, moving open -> half-open once the cool-down has passed."""
        if self.opened_at is None:
            return self.CLOSED
        if self.clock() - self.opened_at >= self.cooldown_s:
            return self.HALF_OPEN
        return self.OPEN

    def allow(self) -> bool:
        """May a request be sent now? In half-open, exactly one probe goes through."""
        state = self.state
        if state == self.CLOSED:
            return True
        if state == self.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def retry_after_s(self) -> float:
        """How long until this deployment takes a request again: the rest of the cool-down while open, a second
        while a half-open probe is in flight (it decides soon), 0 when a request may go now."""
        state = self.state
        if state == self.OPEN:
            assert self.opened_at is not None
            return max(0.0, self.cooldown_s - (self.clock() - self.opened_at))
        return 1.0 if state == self.HALF_OPEN and self._probe_in_flight else 0.0

    def record_success(self) -> None:
        """A good answer closes the circuit."""
        self.failures = 0
        self.opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        """Count a failure; open (again) at the threshold or when a probe fails."""
        self.failures += 1
        if self._probe_in_flight or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self._probe_in_flight = False


@dataclass
class Deployment:
    """One place a model is served: an OpenAI-compatible base URL (ending in /v1)."""

    name: str
    url: str
    model: str
    priority: int = 0
    weight: float = 1.0
    timeout_s: float = 120.0
    connect_timeout_s: float = 2.0
    retries: int = 1
    backoff_s: float = 0.05
    api_key: str | None = None
    breaker: CircuitBreaker = field(default_factory=lambda: CircuitBreaker(3, 30.0))


@dataclass
class ModelRoute:
    """A public model name with its price, its deployments, and what its engines accept beyond the standard."""

    name: str
    price: Price
    deployments: list[Deployment]
    extra_fields: frozenset[str] = frozenset()
    max_n: int = 1
    content_parts: frozenset[str] = frozenset({"text"})
    cache: CacheFields = field(default_factory=CacheFields)
    mean_logprob: bool = False  # ask the inference service for usage.mean_logprob (trace events)


class RouteConfigError(ValueError):
    """The routes file is malformed; the message says where."""


class RouteTable:
    """All routes, loaded once from YAML."""

    def __init__(self, routes: list[ModelRoute]) -> None:
        self.routes = {r.name: r for r in routes}

    @classmethod
    def from_file(cls, path: Path) -> RouteTable:
        """Parse a routes file (see config/routes.yaml for the format)."""
        try:
            doc = yaml.safe_load(expand_env(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            raise RouteConfigError(f"cannot read routes file {path}: {exc}") from exc
        try:
            return cls.from_dict(doc or {})
        except RouteConfigError as exc:
            raise RouteConfigError(f"routes file {path}: {exc}") from None

    @classmethod
    def from_dict(cls, doc: Any) -> RouteTable:
        """Build from an already-parsed document; unknown keys and out-of-range values are errors."""
        try:
            parsed = RoutesFile.model_validate(doc)
        except ValidationError as exc:
            raise RouteConfigError(describe(exc)) from None
        defaults = parsed.defaults.model_dump(exclude_unset=True)
        routes = []
        for i, model in enumerate(parsed.models):
            deployments = []
            for j, dep in enumerate(model.deployments):
                merged = DeploymentFields.model_validate({**defaults, **dep.model_dump(exclude_unset=True)})
                if not merged.url:
                    raise RouteConfigError(f"models[{i}].deployments[{j}] needs a url")
                api_key = os.environ.get(merged.api_key_env) if merged.api_key_env else merged.api_key
                deployments.append(
                    Deployment(
                        name=merged.name or f"{model.name}-{j}",
                        url=merged.url.rstrip("/"),
                        model=merged.model or model.name,
                        priority=j if merged.priority is None else merged.priority,
                        weight=merged.weight,
                        timeout_s=merged.timeout_s,
                        connect_timeout_s=merged.connect_timeout_s,
                        retries=merged.retries,
                        backoff_s=merged.backoff_s,
                        api_key=api_key or None,
                        breaker=CircuitBreaker(merged.circuit_failure_threshold, merged.circuit_cooldown_s),
                    )
                )
            routes.append(
                ModelRoute(
                    name=model.name,
                    price=Price(model.price.input_per_1m, model.price.output_per_1m),
                    deployments=deployments,
                    extra_fields=frozenset(model.extra_fields),
                    max_n=model.max_n,
                    content_parts=frozenset(model.content_parts) | {"text"},
                    cache=model.cache,
                    mean_logprob=model.mean_logprob,
                )
            )
        return cls(routes)

    def get(self, model: str) -> ModelRoute | None:
        """The route of a public model name."""
        return self.routes.get(model)

    def deployments(self) -> list[Deployment]:
        """Every deployment of every model (for metrics)."""
        return [d for r in self.routes.values() for d in r.deployments]


_RNG = random.Random()  # one generator: seeding a new one per request reads os.urandom every time


def plan(route: ModelRoute, rng: random.Random | None = None) -> list[Deployment]:
    """Order deployments to try: by priority, then a weighted shuffle within each priority."""
    rng = rng or _RNG
    if len(route.deployments) == 1:
        return list(route.deployments)  # nothing to order
    ordered: list[Deployment] = []
    for priority in sorted({d.priority for d in route.deployments}):
        tier = [d for d in route.deployments if d.priority == priority]
        # Weighted shuffle (Efraimidis-Spirakis): key = u^(1/w), largest first.
        tier.sort(key=lambda d: rng.random() ** (1.0 / max(d.weight, 1e-9)), reverse=True)
        ordered.extend(tier)
    return ordered
