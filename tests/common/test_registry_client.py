"""llmops_common.registry_client: the one registry client (paths, token, the one error type) over a fake HTTP client."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from llmops_common.http import Reply
from llmops_common.registry_client import AsyncRegistryClient, RegistryClient, RegistryError
from services.finetune import register as finetune_register
from tests.support.fake_http import FakeAsyncHTTP, FakeBlockingHTTP, Sent, reply


class FakeRegistry:
    """Path -> (status, body); records every request."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.seen: list[Sent] = []

    def __call__(self, request: Sent) -> Reply:
        self.seen.append(request)
        key = (request.method, request.path)
        if key not in self.answers:
            return reply(404, {"error": {"code": "not_found", "message": "no route"}})
        return reply(*self.answers[key])

    def sync(self, token: str | None = "tok") -> RegistryClient:
        return RegistryClient("http://registry/", token, http=FakeBlockingHTTP(self))

    def async_(self, token: str | None = "tok") -> AsyncRegistryClient:
        return AsyncRegistryClient("http://registry/", token, http=FakeAsyncHTTP(self))


async def test_async_reads_send_the_token_and_map_an_unset_alias_to_none() -> None:
    fake = FakeRegistry(
        {
            ("GET", "/v1/models/m/aliases/production"): (200, {"version": "3", "artifact_uri": "file:///x"}),
            ("GET", "/v1/prompts/p/aliases/production"): (200, {"version": 2, "template": "t"}),
            ("GET", "/v1/catalogue?alias=production"): (200, {"alias": "production", "models": []}),
        }
    )
    client = fake.async_()
    assert (await client.model_alias("m", "production") or {})["version"] == "3"
    assert await client.model_alias("m", "challenger") is None  # 404: the alias is not set
    assert (await client.prompt_alias("p", "production"))["version"] == 2
    assert (await client.catalogue())["models"] == []
    assert {r.headers["authorization"] for r in fake.seen} == {"Bearer tok"}


async def test_one_error_type_with_status_and_code_or_none_when_unreachable() -> None:
    fake = FakeRegistry({("GET", "/v1/prompts/p/aliases/x"): (404, {"error": {"code": "prompt_not_found"}})})
    with pytest.raises(RegistryError, match="prompt_not_found") as refused:
        await fake.async_().prompt_alias("p", "x")
    assert (refused.value.status, refused.value.code) == (404, "prompt_not_found")

    def down(request: Sent) -> Reply:
        raise aiohttp.ClientConnectionError("refused")

    client = AsyncRegistryClient("http://registry", http=FakeAsyncHTTP(down))
    with pytest.raises(RegistryError, match="registry unreachable") as unreachable:
        await client.catalogue()
    assert (unreachable.value.status, unreachable.value.code) == (None, None)


def test_no_token_sends_no_authorization_header() -> None:
    fake = FakeRegistry({("GET", "/v1/models/m/aliases/production"): (200, {"version": "1"})})
    fake.sync(token=None).model_alias("m", "production")
    assert "authorization" not in fake.seen[0].headers


def test_ensure_dataset_version_reuses_the_version_with_the_same_digest() -> None:
    fake = FakeRegistry(
        {
            ("GET", "/v1/datasets/d/versions"): (200, [{"version": 4, "digest": "sha256:aa"}]),
            ("POST", "/v1/datasets/d/versions"): (201, {"name": "d", "version": 5}),
        }
    )
    client = fake.sync()
    assert client.ensure_dataset_version("d", {"digest": "sha256:aa"}) == {"name": "d", "version": 4}
    assert client.ensure_dataset_version("d", {"digest": "sha256:bb"}) == {"name": "d", "version": 5}
    assert [r.method for r in fake.seen] == ["GET", "GET", "POST"]


def test_finetune_registers_a_version_with_evidence_under_the_evaluators_token() -> None:
    fake = FakeRegistry(
        {
            ("POST", "/v1/models/m/versions"): (201, {"version": 7}),
            ("POST", "/v1/evaluations"): (201, {"run_id": "r1"}),
            ("POST", "/v1/models/m/versions/7/evals"): (200, {"ok": True}),
            ("GET", "/v1/policies"): (200, []),
            ("PUT", "/v1/policies/finetune-gate"): (200, {}),
        }
    )
    client = fake.sync("member")
    out = finetune_register.register_version(client, "m", "file:///m.gguf", [], {"x": 1.0}, {}, "d", "eval-tok")
    assert out == {"version": "7", "evidence_run_id": "r1"}
    evaluation, attach = fake.seen[1], fake.seen[2]
    assert evaluation.headers["authorization"] == "Bearer eval-tok"  # the evaluator's own token writes the run
    assert attach.headers["authorization"] == "Bearer member" and json.loads(attach.content) == {"run_id": "r1"}
    assert finetune_register.ensure_gate(client, "m*") is True
    assert json.loads(fake.seen[-1].content)["name_pattern"] == "m*"
