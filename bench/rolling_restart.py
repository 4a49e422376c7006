"""Rolling restarts under steady load: each service of a private platform restarted in turn (issue 15, item 3).

    python -m bench.rolling_restart            # results in bench/results/rolling_restart.md/json

The platform is started as `make up GATEWAY_WORKERS=2` starts it, privately (own state folder, ports, Redis; see
bench/soak.py). Closed-loop clients send chats, streamed chats, RAG answers, guardrails checks and feedback the
whole time. The gateway, the one replicated service, is rolled with SIGHUP to uvicorn's supervisor (workers replaced
one at a time, each drained). Every other service runs as one process, so its restart is a stop (SIGTERM, as
`make down` sends) then `make up`'s start; what clients see meanwhile is counted per kind: the bounded errors that
docs/operations.md documents. Nothing here retries: each failure a client library would have to handle is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.load import CHECK_TEXTS, PROMPTS, QUESTIONS, load_key
from bench.procstats import children_map
from bench.soak import RESULTS, PrivatePlatform, machine

ROLL_PORT_OFFSET = 22000
ORDER = ("gateway", "inference", "guardrails", "rag", "feedback", "registry", "mlflow")
KINDS = ("chat", "stream", "rag", "check", "feedback")
SETTLE_S = 10.0  # load kept on after a service is back, so late effects (reconnects, caches) are counted too


class Clients:
    """Closed-loop clients of every kind; outcomes kept as (start, end, kind, outcome)."""

    def __init__(self, values: dict[str, str], key: str, seed: int) -> None:
        self.values, self.key = values, key
        self.rng = random.Random(seed)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(120, connect=10))
        self.outcomes: list[tuple[float, float, str, str]] = []
        self.answered: list[tuple[float, str]] = []  # (time, request id) of 200 chats, for feedback
        self.stop = asyncio.Event()
        self.retry_after = 1.0  # the last Retry-After seen

    async def one(self, kind: str) -> str:
        v, auth = self.values, {"authorization": f"Bearer {self.key}"}
        if kind in ("chat", "stream"):
            body: dict[str, Any] = {
                "model": "smollm2-135m-instruct",
                "messages": [{"role": "user", "content": self.rng.choice(PROMPTS)}],
                "max_tokens": 16,
                "stream": kind == "stream",
            }
            async with self.http.stream(
                "POST", f"{v['LLMOPS_GATEWAY_URL']}/v1/chat/completions", json=body, headers=auth
            ) as response:
                text = (await response.aread()).decode(errors="replace")
            if response.status_code == 200 and kind == "chat" and response.headers.get("x-request-id"):
                self.answered.append((time.monotonic(), response.headers["x-request-id"]))
            if kind == "stream" and response.status_code == 200:
                if not text.rstrip().endswith("data: [DONE]"):
                    return "200 without [DONE]"
                if '"error"' in text:
                    code = text.split('"code":', 1)[1].split(",", 1)[0].strip(' "}') if '"code":' in text else ""
                    return f"200 with error event {code}".strip()
            return self.status(response, text)
        if kind == "rag":
            response = await self.http.post(
                f"{v['LLMOPS_RAG_URL']}/v1/collections/llmops-docs/answer",
                json={"question": self.rng.choice(QUESTIONS)},
                headers=auth,
            )
            if response.status_code == 200 and response.json().get("degraded"):
                return "200 degraded"
            return self.status(response, response.text)
        if kind == "check":
            response = await self.http.post(
                f"{v['LLMOPS_GUARDRAILS_URL']}/v1/check/input",
                json={"text": self.rng.choice(CHECK_TEXTS), "team": "load"},
                headers={"authorization": f"Bearer {v['LLMOPS_GUARDRAILS_TOKEN']}"},
            )
            return self.status(response, response.text)
        due = [rid for at, rid in self.answered if time.monotonic() - at > 3]
        if not due:
            await asyncio.sleep(0.5)
            return "skipped"
        request_id = due[-1]
        self.answered = [(at, rid) for at, rid in self.answered if rid != request_id]
        response = await self.http.post(
            f"{v['LLMOPS_FEEDBACK_URL']}/v1/feedback", json={"request_id": request_id, "thumbs": "up"}, headers=auth
        )
        return self.status(response, response.text)

    def status(self, response: httpx.Response, text: str) -> str:
        if response.status_code < 400:
            return str(response.status_code)
        code = ""
        with contextlib.suppress(ValueError, KeyError, TypeError):
            code = json.loads(text)["error"]["code"]
        retry = ""
        if "retry-after" in response.headers:
            retry = " +Retry-After"
            with contextlib.suppress(ValueError):
                self.retry_after = float(response.headers["retry-after"])
        return f"{response.status_code} {code}{retry}".strip()

    async def client(self, kind: str, rate: float) -> None:
        """One request at a time, at most `rate` a second (steady load, not a flood of fast refusals); after a
        refusal it waits what Retry-After says (at most 5 s), as a polite client would, but never resends."""
        while not self.stop.is_set():
            start = time.monotonic()
            try:
                outcome = await self.one(kind)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            if outcome != "skipped":
                self.outcomes.append((start, time.monotonic(), kind, outcome))
            pause = 1.0 / rate - (time.monotonic() - start)
            if "Retry-After" in outcome:
                pause = max(pause, min(5.0, self.retry_after))
            await asyncio.sleep(max(0.0, pause))


def gateway_workers(supervisor: int) -> set[int]:
    """The gateway's uvicorn workers (spawned children), not multiprocessing's resource tracker."""
    out = set()
    for pid in children_map().get(supervisor, []):
        try:
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.add(pid)
        except OSError:
            continue
    return out


async def wait_until(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


async def restart(stack: PrivatePlatform, name: str) -> dict[str, Any]:
    """Restart one service; returns when it is back (ready), with what was done and how long it took."""
    pid = stack.pids()[name]
    began = time.monotonic()
    if name == "gateway":
        old = gateway_workers(pid)
        os.kill(pid, signal.SIGHUP)
        done = await wait_until(lambda: not (gateway_workers(pid) & old) and len(gateway_workers(pid)) == len(old),
                                600)  # fmt: skip
        return {"how": "SIGHUP: workers replaced one by one", "seconds": round(time.monotonic() - began, 1),
                "completed": done}  # fmt: skip
    os.killpg(pid, signal.SIGTERM)
    if not await wait_until(lambda: not alive(pid), 30):
        os.killpg(pid, signal.SIGKILL)
    stopped = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).resolve().parents[1] / "scripts" / "platformctl.py"),
        "up",
        env=stack.env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    code = await proc.wait()
    return {
        "how": "SIGTERM to its process group, then `make up` starts it",
        "stop_seconds": round(stopped - began, 1),
        "seconds": round(time.monotonic() - began, 1),
        "completed": code == 0,
    }


async def run(
    stack: PrivatePlatform, services: list[str], clients_per_kind: int, rate: float, seed: int
) -> dict[str, Any]:
    values = stack.env_values()
    clients = Clients(values, load_key(values), seed)
    tasks = [asyncio.create_task(clients.client(k, rate)) for k in KINDS for _ in range(clients_per_kind)]
    t0 = time.monotonic()
    rolls = []
    try:
        await asyncio.sleep(20)  # steady state first
        baseline_end = time.monotonic()
        for name in services:
            began = time.monotonic()
            print(f"restarting {name} ...", flush=True)
            info = await restart(stack, name)
            back = time.monotonic()
            await asyncio.sleep(SETTLE_S)
            rolls.append({"service": name, "window": (began, back + SETTLE_S), **info})
            print(f"  {name}: {info}", flush=True)
    finally:
        clients.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await clients.http.aclose()

    def tally(start: float, end: float) -> dict[str, dict[str, int]]:
        out: dict[str, Counter[str]] = {k: Counter() for k in KINDS}
        for s, _, kind, outcome in clients.outcomes:
            if start <= s < end:
                out[kind][outcome] += 1
        return {k: dict(v) for k, v in out.items()}

    def error_span(start: float, end: float) -> dict[str, float]:
        """Per kind: seconds from the first failed request's start to the last failed one's end in the window."""
        spans = {}
        for kind in KINDS:
            bad = [(s, e) for s, e, k, o in clients.outcomes
                   if k == kind and start <= s < end and not o.startswith("2")]  # fmt: skip
            if bad:
                spans[kind] = round(max(e for _, e in bad) - min(s for s, _ in bad), 1)
        return spans

    for roll in rolls:
        start, end = roll.pop("window")
        roll["outcomes"] = tally(start, end)
        roll["failed"] = sum(n for c in roll["outcomes"].values() for o, n in c.items() if not o.startswith("2"))
        roll["error_span_s"] = error_span(start, end)
        roll["window_s"] = round(end - start, 1)
    return {"baseline": tally(t0, baseline_end), "baseline_s": round(baseline_end - t0, 1), "rolls": rolls}


def report_markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Rolling restarts under steady load",
        "",
        f"- date: {result['started']} → {result['finished']} (UTC)",
        f"- machine: {m['host']}, {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_bytes'] / 2**30:.1f} GiB; load "
        f"average at start {result['loadavg_start']}, at end {result['loadavg_end']} (**shared machine**)",
        f"- platform: private `make up GATEWAY_WORKERS=2` (ports +{result['config']['port_offset']}, own Redis); "
        f"{result['config']['clients_per_kind']} client(s) per kind ({', '.join(KINDS)}), each at most "
        f"{result['config']['rate']} request/s, one at a time; no resend (a refusal's Retry-After is waited, max 5 s)",
        f"- each window runs from the restart's start until {SETTLE_S:.0f} s after the service is back",
        "",
        "| service | how | back after | failed | errors span (s, per kind) | outcomes in the window (non-2xx bold) |",
        "|---|---|---:|---:|---|---|",
    ]
    for roll in result["rolls"]:
        cells = []
        for kind, counts in roll["outcomes"].items():
            parts = [f"**{o}** x{n}" if not o.startswith("2") else f"{o} x{n}" for o, n in sorted(counts.items())]
            cells.append(f"{kind}: {', '.join(parts) or '-'}")
        spans = ", ".join(f"{k} {v:.0f}" for k, v in roll["error_span_s"].items()) or "-"
        lines.append(f"| {roll['service']} | {roll['how']} | {roll['seconds']:.0f} s | {roll['failed']} | {spans} | "
                     + "; ".join(cells) + " |")  # fmt: skip
    base = "; ".join(f"{k}: {', '.join(f'{o} x{n}' for o, n in sorted(c.items()))}"
                     for k, c in result["baseline"].items())  # fmt: skip
    lines += ["", f"Baseline ({result['baseline_s']:.0f} s before the first restart): {base}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", default=",".join(ORDER), help="comma-separated, in order")
    parser.add_argument("--clients-per-kind", type=int, default=1)
    parser.add_argument("--rate", type=float, default=1.0, help="requests a second per client at most")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--port-offset", type=int, default=ROLL_PORT_OFFSET)
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/llmops-load"))
    parser.add_argument("--keep-up", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="rolling_restart")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    load_start = [round(x, 2) for x in os.getloadavg()]
    stack = PrivatePlatform(args.state_dir, args.port_offset, gateway_workers=2)
    stack.ctl("up")
    try:
        out = asyncio.run(run(stack, args.services.split(","), args.clients_per_kind, args.rate, args.seed))
    finally:
        if not args.keep_up:
            stack.ctl("down", timeout_s=300)
    result = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": load_start,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "config": {
            "port_offset": args.port_offset,
            "clients_per_kind": args.clients_per_kind,
            "rate": args.rate,
            "seed": args.seed,
        },
        **out,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(report_markdown(result))
    print(f"wrote {args.out / args.name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
