"""RAG with its vector store unavailable: a Qdrant server down (port closed) or hung (connections accepted, nothing
answered), and local mode's data folder held by another process (a second RAG started on the same data dir, the
local-mode failure users meet). /answer gives the documented degraded answer (200, `degraded: true`,
`degraded_reason: vector_store_unavailable: ...`, no passages, no LLM call); /query and the collection routes a
503 `vector_store_unavailable` with Retry-After; /readyz 503. Everything within a bound, and the local store is
opened again by itself once the folder is free.

No Qdrant server binary exists here: "down" and "hung" are what a client of a Qdrant server meets; the real RAG
service (real embedder, FAKE gateway) talks to them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.rag.app import create_app
from services.rag.embedder import Embedder
from services.rag.settings import RagSettings
from services.rag.tests.fake_gateway import FakeGatewayState, build_fake_gateway, serve_in_thread
from tests.support.servers import REPO, free_port

pytestmark = pytest.mark.integration

KEY = {"authorization": "Bearer key-team-a"}  # a key the FAKE gateway knows (team-a)
BOUND_S = 5.0  # every answer below comes within this, hung store included (RAG_QDRANT_TIMEOUT_S=1)
TEXT = "Otters hold hands while they sleep so that they do not drift apart on the water."


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(batch_size=32, threads=1)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[str, FakeGatewayState]]:
    state = FakeGatewayState()
    with serve_in_thread(build_fake_gateway(state)) as url:
        yield url, state


@contextmanager
def rag(embedder: Embedder, gateway_url: str, data_dir: Path, **settings: Any) -> Iterator[httpx.Client]:
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        "gateway_url": gateway_url,
        "me_cache_ttl_s": 0,
        "log_json": False,
        "log_level": "WARNING",
        "service_token": "rag-faults",
        "qdrant_url": None,
        "qdrant_timeout_s": 1.0,
    }
    app = create_app(RagSettings(**(values | settings)), embedder=embedder)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=KEY, timeout=30) as client:
        yield client


@contextmanager
def hung_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a frozen Qdrant)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def assert_degraded(client: httpx.Client, gateway: FakeGatewayState) -> None:
    """/answer (JSON and SSE) degraded and flagged, /query and collections a 503, /readyz 503, all in BOUND_S."""
    chats = len(gateway.chat_calls)
    started = time.monotonic()
    answer = client.post("/v1/collections/docs/answer", json={"question": "What do otters do?"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["degraded"] is True and body["answer"] is None and body["passages"] == []
    assert body["degraded_reason"].startswith("vector_store_unavailable: ")
    streamed = client.post("/v1/collections/docs/answer", json={"question": "What do otters do?", "stream": True})
    assert streamed.status_code == 200 and '"degraded":true' in streamed.text.replace(" ", "")
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert len(gateway.chat_calls) == chats  # no LLM call: an answer without the documents would not rest on them
    for refused in (
        client.post("/v1/collections/docs/query", json={"query": "otters"}),
        client.post("/v1/collections", json={"name": "more"}),
        client.get("/v1/collections"),
    ):
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "vector_store_unavailable"
        assert refused.headers["retry-after"]
    assert client.get("/readyz").status_code == 503
    assert time.monotonic() - started < 5 * BOUND_S  # five calls, each within BOUND_S
    assert 'llmops_rag_answers_total{outcome="degraded"} 2.0' in client.get("/metrics").text


def test_qdrant_server_down(embedder: Embedder, gateway: tuple[str, FakeGatewayState], tmp_path: Path) -> None:
    with rag(embedder, gateway[0], tmp_path, qdrant_url=f"http://127.0.0.1:{free_port()}") as client:
        assert_degraded(client, gateway[1])


def test_qdrant_server_hung(embedder: Embedder, gateway: tuple[str, FakeGatewayState], tmp_path: Path) -> None:
    with hung_server() as url, rag(embedder, gateway[0], tmp_path, qdrant_url=url) as client:
        started = time.monotonic()
        answer = client.post("/v1/collections/docs/answer", json={"question": "What do otters do?"})
        assert time.monotonic() - started < BOUND_S
        assert answer.status_code == 200 and answer.json()["degraded"] is True


def test_local_store_held_by_another_process_then_freed(
    embedder: Embedder, gateway: tuple[str, FakeGatewayState], tmp_path: Path
) -> None:
    """A second RAG on the same data dir used to crash at start ("already accessed by another instance");
    it now starts not ready, degrades, and opens the store by itself once the other process lets go."""
    folder = tmp_path / "qdrant"
    hold = f"from qdrant_client import QdrantClient; c = QdrantClient(path={str(folder)!r}); print('held', flush=True)"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold + "; input()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with rag(embedder, gateway[0], tmp_path) as client:
            assert_degraded(client, gateway[1])
            holder.communicate(input="\n", timeout=30)  # the other process exits and releases the folder
            assert client.get("/readyz").status_code == 200
            assert client.post("/v1/collections", json={"name": "docs"}).status_code == 201
            ingest = {"documents": [{"id": "otters", "text": TEXT}], "wait": True}
            assert client.post("/v1/collections/docs/documents", json=ingest).status_code == 200
            answer = client.post("/v1/collections/docs/answer", json={"question": "What do otters do?"}).json()
            assert answer["degraded"] is False and answer["passages"]
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()  # reaps it and closes its pipes
