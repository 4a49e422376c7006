"""The batch API end to end: the official openai client, the gateway and the real CPU model; and a restart."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest
import yaml

from tests.support.fixtures import ADMIN, MODEL, REDIS_URL, Gateway
from tests.support.servers import uvicorn_service
from tests.support.trace_events import wait_for_events

pytestmark = pytest.mark.integration
# The app under test; a student's replacement gateway (or a wrapper) can be named here.
APP = os.environ.get("LLMOPS_TEST_GATEWAY_APP", "services.gateway.app:create_app")
PRICE = {"input_per_1m": 0.10, "output_per_1m": 0.20}
MAX_FILE = 200_000


def request_line(custom_id: str, content: str, model: str = MODEL, max_tokens: int = 4) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


@pytest.fixture(scope="module")
def batch_gateway(tmp_path_factory: pytest.TempPathFactory, inference_url: str) -> Iterator[Callable[..., object]]:
    """Start gateways (context managers) routing to the real model; several may share one Redis prefix."""
    folder = tmp_path_factory.mktemp("batch-gw")
    routes = folder / "routes.yaml"
    model = {"name": MODEL, "price": PRICE, "deployments": [{"name": "local", "url": inference_url + "/v1"}]}
    routes.write_text(
        yaml.safe_dump({"models": [model | {"deployments": [model["deployments"][0] | {"model": MODEL}]}]})
    )

    @contextlib.contextmanager
    def start(name: str, **env: str) -> Iterator[Gateway]:
        full = {
            "GATEWAY_ADMIN_KEY": ADMIN,
            "GATEWAY_REDIS_URL": REDIS_URL,
            "GATEWAY_REDIS_PREFIX": f"test:gwb:{name}",
            "GATEWAY_ROUTES_FILE": str(routes),
            "GATEWAY_EVENTS_STREAM": f"test:events:gwb:{name}",
            "GATEWAY_BATCH_POLL_S": "0.2",
            "GATEWAY_BATCH_MAX_FILE_BYTES": str(MAX_FILE),
            **env,
        }
        log = Path(folder) / f"gw-{name}-{secrets.token_hex(2)}.log"
        with uvicorn_service(APP, full, log_path=log) as url:
            gateway = Gateway(url)
            gateway.events_stream = full["GATEWAY_EVENTS_STREAM"]
            try:
                yield gateway
            finally:
                gateway.close()

    yield start


def wait_done(client: openai.OpenAI, batch_id: str, timeout_s: float = 120) -> openai.types.Batch:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.25)
    raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout_s}s: {batch.request_counts}")


def test_batch_with_the_openai_client(batch_gateway: Callable[..., contextlib.AbstractContextManager[Gateway]]) -> None:
    with batch_gateway(secrets.token_hex(3)) as gw:
        team = f"batch-{secrets.token_hex(3)}"
        oc = gw.openai(gw.key(team=team))
        lines = [request_line(f"q{i}", f"Name a colour. ({i})") for i in range(4)]
        lines.append(request_line("too-long", "word " * 3000))  # the engine's 400 becomes a per-line error
        lines.append(request_line("no-model", "hi", model="nope"))  # the gateway's 404, per line
        uploaded = oc.files.create(file=("questions.jsonl", io.BytesIO(jsonl(lines))), purpose="batch")
        assert uploaded.purpose == "batch" and uploaded.filename == "questions.jsonl"
        created = oc.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "test"},
        )
        batch = wait_done(oc, created.id)
        assert batch.status == "completed" and batch.metadata == {"run": "test"}
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (6, 4, 2)
        out = [orjson.loads(x) for x in oc.files.content(batch.output_file_id).text.splitlines()]
        assert [x["custom_id"] for x in out] == [f"q{i}" for i in range(4)]
        for item in out:
            assert item["error"] is None and item["response"]["status_code"] == 200
            assert item["response"]["body"]["choices"][0]["message"]["content"].strip()
            assert 0 < item["response"]["body"]["usage"]["completion_tokens"] <= 4
        errors = {x["custom_id"]: x for x in map(orjson.loads, oc.files.content(batch.error_file_id).text.splitlines())}
        assert errors["too-long"]["error"]["code"] == "context_length_exceeded"
        assert errors["too-long"]["response"]["status_code"] == 400
        assert errors["no-model"]["error"]["code"] == "model_not_found"
        # Metered like online traffic: the team's spend is exactly the cost of the answered lines.
        usages = [x["response"]["body"]["usage"] for x in out]
        expected = sum(u["prompt_tokens"] * 0.10 + u["completion_tokens"] * 0.20 for u in usages) / 1e6
        assert gw.admin.get(f"/admin/teams/{team}").json()["spend_usd"] == pytest.approx(expected, rel=1e-6)
        assert batch.usage.output_tokens == sum(u["completion_tokens"] for u in usages)
        assert [b.id for b in oc.batches.list().data] == [batch.id]
        # Another team sees none of it.
        stranger = gw.openai(gw.key())
        with pytest.raises(openai.NotFoundError):
            stranger.batches.retrieve(batch.id)
        with pytest.raises(openai.NotFoundError):
            stranger.files.content(batch.output_file_id)
        with pytest.raises(openai.ConflictError):
            oc.batches.cancel(batch.id)
        # Files expire (30 days by default, as OpenAI's batch files) and can be deleted, by their team only.
        assert uploaded.expires_at and uploaded.expires_at >= uploaded.created_at + 3600
        with pytest.raises(openai.NotFoundError):
            stranger.files.delete(batch.output_file_id)
        deleted = oc.files.delete(batch.output_file_id)
        assert (deleted.id, deleted.deleted) == (batch.output_file_id, True)
        with pytest.raises(openai.NotFoundError):
            oc.files.content(batch.output_file_id)
        assert oc.batches.retrieve(batch.id).request_counts.completed == 4


def test_bad_uploads_are_clear_4xx_and_store_nothing(
    batch_gateway: Callable[..., contextlib.AbstractContextManager[Gateway]],
) -> None:
    with batch_gateway(secrets.token_hex(3)) as gw:
        oc = gw.openai(gw.key())
        broken = jsonl([request_line("a", "hi")]) + b'{"custom_id": "b", "method": "POST"\n'
        with pytest.raises(openai.BadRequestError) as err:
            oc.files.create(file=("bad.jsonl", io.BytesIO(broken)), purpose="batch")
        assert err.value.body["code"] == "invalid_batch_line" and err.value.body["message"].startswith("line 2:")
        big_line = request_line("x", "y" * 1000)
        too_big = jsonl([big_line | {"custom_id": str(i)} for i in range(MAX_FILE // 1000 + 20)])  # just over
        with pytest.raises(openai.APIStatusError) as err:
            oc.files.create(file=("big.jsonl", io.BytesIO(too_big)), purpose="batch")
        assert err.value.status_code == 413 and err.value.body["code"] == "file_too_large"
        assert f"{MAX_FILE} bytes" in err.value.body["message"]
        huge = b"x" * (MAX_FILE * 3)  # refused before it is read
        response = httpx.post(
            gw.url + "/v1/files",
            headers={"authorization": f"Bearer {oc.api_key}"},
            files={"file": ("huge.jsonl", huge)},
            data={"purpose": "batch"},
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        one = ("one.jsonl", io.BytesIO(jsonl([request_line("a", "hi")])))
        with pytest.raises(openai.BadRequestError) as err:
            oc.files.create(file=one, purpose="batch", expires_after={"anchor": "created_at", "seconds": 60})
        assert err.value.body["code"] == "invalid_expires_after"
        one[1].seek(0)
        short = oc.files.create(file=one, purpose="batch", expires_after={"anchor": "created_at", "seconds": 3600})
        assert short.expires_at == short.created_at + 3600
        assert oc.files.delete(short.id).deleted
        with pytest.raises(openai.NotFoundError) as err:
            oc.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
        assert err.value.body["code"] == "file_not_found"
        assert oc.files.list().data == [] and oc.batches.list().data == []


def test_restart_resumes_and_every_line_runs_once(
    batch_gateway: Callable[..., contextlib.AbstractContextManager[Gateway]],
) -> None:
    name = secrets.token_hex(3)
    n = 40  # far more than the lines in flight, so stopping after two completions leaves work to resume
    with batch_gateway(name) as first:
        key = first.key()
        oc = first.openai(key)
        file = oc.files.create(
            file=("in.jsonl", io.BytesIO(jsonl([request_line(f"r{i}", f"Say {i}.") for i in range(n)]))),
            purpose="batch",
        )
        batch_id = oc.batches.create(input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h").id
        deadline = time.monotonic() + 60
        while oc.batches.retrieve(batch_id).request_counts.completed < 2:
            assert time.monotonic() < deadline, "the batch did not start"
            time.sleep(0.1)
    # The first gateway is gone mid-batch; a new one on the same Redis prefix takes over.
    with batch_gateway(name) as second:
        oc = second.openai(key)
        stopped_at = oc.batches.retrieve(batch_id).request_counts.completed
        assert 2 <= stopped_at < n, "stopped mid-batch"
        batch = wait_done(oc, batch_id)
        assert batch.status == "completed" and batch.request_counts.completed == n
        out = [orjson.loads(x) for x in oc.files.content(batch.output_file_id).text.splitlines()]
        assert sorted(x["custom_id"] for x in out) == sorted(f"r{i}" for i in range(n))
        events_stream = second.events_stream
    # One trace event per line across both gateways: no finished line was sent twice.
    # The events are written in the background: wait until one per line has arrived (a duplicate would show).
    events = wait_for_events(REDIS_URL, events_stream, lambda seen: len(seen) >= n)
    assert sorted(e["request_id"] for e in events) == sorted(x["response"]["request_id"] for x in out)
