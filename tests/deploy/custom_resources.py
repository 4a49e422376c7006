"""Custom resources of the chart (Prometheus Operator, KEDA) checked against their CRDs' schemas, strictly.

kubernetes-validate ships schemas for built-in kinds only. The `cloudcoil-models-*` packages (PyPI) carry
pydantic models generated from the Prometheus Operator and KEDA CRDs, so required fields and types are checked
by them. Like kubeconform's `-strict` (and `kubectl apply --validate=strict`), an unknown field must also fail:
the generated models accept extra keys, so `unknown_fields` walks each object beside its model and names every
key that the CRD's schema does not declare.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from cloudcoil.models.keda import v1alpha1 as keda_v1alpha1
from cloudcoil.models.prometheus_operator import v1 as monitoring_v1
from pydantic import BaseModel, RootModel

MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring_v1.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring_v1.PrometheusRule,
    ("keda.sh/v1alpha1", "ScaledObject"): keda_v1alpha1.ScaledObject,
}


def _model_classes(annotation: Any) -> list[Any]:
    """The non-None members of an annotation (Optional/Union/Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_classes(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _model_classes(arg)]
    return [] if annotation is type(None) else [annotation]


def _walk(value: Any, annotation: Any, path: str, found: list[str]) -> None:
    for member in _model_classes(annotation):
        origin = typing.get_origin(member)
        if origin in (list, typing.List) and isinstance(value, list):  # noqa: UP006 - generated models use List
            for i, item in enumerate(value):
                _walk(item, typing.get_args(member)[0], f"{path}[{i}]", found)
            return
        if origin in (dict, typing.Dict) and isinstance(value, dict):  # noqa: UP006
            for key, item in value.items():
                _walk(item, typing.get_args(member)[1], f"{path}.{key}", found)
            return
        if isinstance(member, type) and issubclass(member, RootModel):
            _walk(value, member.model_fields["root"].annotation, path, found)
            return
        if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(value, dict):
            by_key = {(f.alias or name): f for name, f in member.model_fields.items()}
            for key, item in value.items():
                field = by_key.get(key)
                if field is None:
                    found.append(f"{path}.{key}".lstrip("."))
                else:
                    _walk(item, field.annotation, f"{path}.{key}", found)
            return


def unknown_fields(doc: dict[str, Any]) -> list[str]:
    """Paths of the keys in `doc` that its kind's schema does not declare (metadata is Kubernetes' own)."""
    model = MODELS[(doc["apiVersion"], doc["kind"])]
    found: list[str] = []
    _walk({k: v for k, v in doc.items() if k != "metadata"}, model, "", found)
    return found


def validate(doc: dict[str, Any]) -> None:
    """Raise ValueError when `doc` breaks its CRD's schema: a wrong type, a missing field or an unknown key."""
    model = MODELS[(doc["apiVersion"], doc["kind"])]
    model.model_validate(doc)  # pydantic.ValidationError is a ValueError
    unknown = unknown_fields(doc)
    if unknown:
        raise ValueError(f"{doc['kind']}/{doc['metadata']['name']}: unknown field(s) {', '.join(unknown)}")
