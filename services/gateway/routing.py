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

from services.gateway.pricing import Price

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
    """A public model name with its price and deployments."""

    name: str
    price: Price
    deployments: list[Deployment]


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
        return cls.from_dict(doc or {})

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RouteTable:
        """Build from an already-parsed document."""
        defaults = doc.get("defaults", {})
        routes = []
        for i, model in enumerate(doc.get("models") or []):
            if "name" not in model or not model.get("deployments"):
                raise RouteConfigError(f"models[{i}] needs a name and at least one deployment")
            deployments = []
            for j, dep in enumerate(model["deployments"]):
                merged = {**defaults, **dep}
                if not merged.get("url"):
                    raise RouteConfigError(f"models[{i}].deployments[{j}] needs a url")
                api_key_env = merged.get("api_key_env")
                deployments.append(
                    Deployment(
                        name=merged.get("name", f"{model['name']}-{j}"),
                        url=str(merged["url"]).rstrip("/"),
                        model=merged.get("model", model["name"]),
                        priority=int(merged.get("priority", j)),
                        weight=float(merged.get("weight", 1.0)),
                        timeout_s=float(merged.get("timeout_s", 120)),
                        connect_timeout_s=float(merged.get("connect_timeout_s", 2)),
                        retries=int(merged.get("retries", 1)),
                        backoff_s=float(merged.get("backoff_s", 0.05)),
                        api_key=os.environ.get(api_key_env) if api_key_env else merged.get("api_key"),
                        breaker=CircuitBreaker(
                            int(merged.get("circuit_failure_threshold", 3)),
                            float(merged.get("circuit_cooldown_s", 30)),
                        ),
                    )
                )
            price = model.get("price") or {}
            routes.append(
                ModelRoute(
                    name=model["name"],
                    price=Price(float(price.get("input_per_1m", 0)), float(price.get("output_per_1m", 0))),
                    deployments=deployments,
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
