"""What each service's code reads from the environment: its settings class first, then explicit reads.

The settings class is the source of truth (prefix + field name, or its validation_alias / AliasChoices);
the few variables a service reads outside it (os.environ in code, ${VAR} in its config files) count too.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from contextlib import contextmanager
from pathlib import Path

from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
_ENV_READ = re.compile(r"""os\.(?:environ\.get|getenv|environ\.setdefault)\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
_ENV_INDEX = re.compile(r"""os\.environ\[\s*["']([A-Za-z_][A-Za-z0-9_]*)["']\s*\]""")
_CONFIG_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-[^}]*)?\}")
# Standard variables the OpenTelemetry SDK reads by itself, allowed once the code uses the SDK.
# MLflow's client takes its basic-auth user from these (MLflow runs behind its basic-auth app, issue 12 row 1).
MLFLOW_CLIENT_ENV = {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
OTEL_SDK_ENV = {
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SDK_DISABLED",
}


def settings_class(service: str) -> type[BaseSettings] | None:
    """The pydantic-settings class defined in services/<service>/settings.py, or None while it does not exist."""
    if not (ROOT / "services" / service / "settings.py").exists():
        return None
    module = importlib.import_module(f"services.{service}.settings")
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseSettings) and obj.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"services/{service}/settings.py should define one settings class, found {classes}"
    return classes[0]


def field_env_names(cls: type[BaseSettings]) -> dict[str, set[str]]:
    """Field name -> the env var names that set it (upper-cased: pydantic-settings matches case-insensitively)."""
    prefix = (cls.model_config.get("env_prefix") or "").upper()
    names: dict[str, set[str]] = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        found: set[str] = set()
        if isinstance(alias, str):
            found.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    found.add(choice.upper())
                elif isinstance(choice, AliasPath) and isinstance(choice.path[0], str):
                    found.add(str(choice.path[0]).upper())
        elif isinstance(alias, AliasPath) and isinstance(alias.path[0], str):
            found.add(str(alias.path[0]).upper())
        elif field.alias:
            found.add(field.alias.upper())
        if not found:
            # With an alias, pydantic-settings looks only at the alias names (no prefix is applied).
            found.add(f"{prefix}{name}".upper())
        names[name] = found
    return names


def explicit_env_reads(service: str) -> set[str]:
    """Variables read outside the settings class: os.environ in code, ${VAR} in config files (tests excluded)."""
    found: set[str] = set()
    roots = [ROOT / "services" / service, ROOT / "libs" / "llmops_common"]
    for root in roots:
        for path in root.rglob("*"):
            if "tests" in path.relative_to(root).parts or not path.is_file():
                continue
            if path.suffix == ".py":
                text = path.read_text(encoding="utf-8", errors="ignore")
                found |= set(_ENV_READ.findall(text)) | set(_ENV_INDEX.findall(text))
                if re.search(r"^\s*(from|import) opentelemetry", text, re.M):
                    found |= OTEL_SDK_ENV  # the OpenTelemetry SDK reads these itself
                if re.search(r"^\s*(from|import) mlflow\b", text, re.M):
                    found |= MLFLOW_CLIENT_ENV  # so does MLflow's client
            elif path.suffix in {".yaml", ".yml", ".toml", ".json"}:
                found |= set(_CONFIG_REF.findall(path.read_text(encoding="utf-8", errors="ignore")))
    return {name.upper() for name in found}


def allowed_env(service: str) -> set[str] | None:
    """Every variable the service's code reads, or None while its settings class does not exist yet."""
    cls = settings_class(service)
    if cls is None:
        return None
    names = set().union(*field_env_names(cls).values()) if cls.model_fields else set()
    return names | explicit_env_reads(service)


@contextmanager
def only_env(env: dict[str, str]):
    """Run with exactly `env` as the process environment (restored afterwards)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_settings(service: str, env: dict[str, str]) -> BaseSettings:
    """Instantiate the service's settings from exactly the env a deployment gives it: proves nothing is missing."""
    cls = settings_class(service)
    assert cls is not None
    with only_env(env):
        return cls()
