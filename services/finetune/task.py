"""The worked example: support tickets -> one strict JSON object. Generated (seeded, no network) and scored here.

Why this task: a 135M instruct model asked for JSON writes prose around it, wraps it in a ``` fence, renames or
invents keys, or copies the ticket; downstream code that calls json.loads on the answer then fails. That is
behaviour, not knowledge (module 9: fine-tune for behaviour), and a few hundred examples of LoRA fix it.

The instruction is in every prompt, so the base model is asked for exactly what it is measured on.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

KEYS = ("name", "city", "product", "urgent")
INSTRUCTION = (
    'Extract the ticket as JSON with exactly the keys "name", "city", "product" (strings) and "urgent" '
    "(true or false). Reply with the JSON object only."
)
NAMES = [
    "Maria", "Ahmed", "Chen", "Olga", "Kwame", "Lucia", "Tom", "Priya", "Jonas", "Fatima", "Diego", "Aiko",
    "Sven", "Amara", "Pierre", "Nadia", "Ravi", "Elena", "Omar", "Greta", "Hugo", "Leila", "Marek", "Sofia",
]  # fmt: skip
CITIES = [
    "Lyon", "Nairobi", "Osaka", "Porto", "Krakow", "Austin", "Lima", "Oslo", "Cairo", "Leeds", "Quito", "Perth",
    "Dublin", "Hanoi", "Turin", "Ghent",
]  # fmt: skip
PRODUCTS = [
    "blender", "laptop", "router", "coffee machine", "printer", "headphones", "vacuum cleaner", "smart watch",
    "desk lamp", "e-bike", "monitor", "kettle", "camera", "phone charger",
]  # fmt: skip
PROBLEMS = ["stopped working", "arrived broken", "makes a strange noise", "will not turn on", "keeps restarting",
            "is missing a part", "overheats", "was charged twice"]  # fmt: skip
URGENT = ["This is urgent, please help today.", "I need it fixed ASAP!", "Urgent: my business depends on it."]
CALM = ["No rush.", "Whenever you can.", "Thanks in advance.", ""]
TEMPLATES = [
    "Hi, I'm {name} from {city}. My {product} {problem}. {tone}",
    "Hello, this is {name} ({city}). The {product} I bought {problem}. {tone}",
    "{tone} My {product} {problem}. Regards, {name}, {city}",
    "Dear support, {name} here, writing from {city}: the {product} {problem}. {tone}",
]


def make_example(rng: random.Random) -> dict[str, Any]:
    """One chat row ({"messages": [...]}, the feedback export's format) and its expected fields."""
    urgent = rng.random() < 0.4
    fields = {"name": rng.choice(NAMES), "city": rng.choice(CITIES), "product": rng.choice(PRODUCTS),
              "urgent": urgent}  # fmt: skip
    tone = rng.choice(URGENT if urgent else CALM)
    ticket = rng.choice(TEMPLATES).format(problem=rng.choice(PROBLEMS), tone=tone, **fields)
    ticket = " ".join(ticket.split())
    answer = json.dumps(fields, ensure_ascii=False)
    return {"messages": [{"role": "user", "content": f"{INSTRUCTION}\nTicket: {ticket}"},
                         {"role": "assistant", "content": answer}]}  # fmt: skip


def generate(rows: int, seed: int = 18) -> list[dict[str, Any]]:
    """`rows` distinct examples, the same for the same (rows, seed) on every machine."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < rows:
        example = make_example(rng)
        key = example["messages"][0]["content"]
        if key not in seen:
            seen.add(key)
            out.append(example)
    return out


def is_held_out(example: dict[str, Any], fraction: float) -> bool:
    """Deterministic split by content hash: the same row lands on the same side in every export version."""
    digest = hashlib.sha256(json.dumps(example["messages"][:-1], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def parse(answer: str) -> dict[str, Any] | None:
    """The answer as the strict format demands: one JSON object, nothing around it, exactly KEYS, right types."""
    try:
        value = json.loads(answer.strip())
    except ValueError:
        return None
    if not isinstance(value, dict) or set(value) != set(KEYS):
        return None
    if not all(isinstance(value[k], str) for k in KEYS[:3]) or not isinstance(value["urgent"], bool):
        return None
    return value


def score(answer: str, reference: str) -> dict[str, float]:
    """format_ok: parses strictly; exact: every field equals the reference's; fields: share of equal fields."""
    got, want = parse(answer), json.loads(reference)
    if got is None:
        return {"format_ok": 0.0, "exact": 0.0, "fields": 0.0}
    equal = sum(got[k] == want[k] for k in KEYS)
    return {"format_ok": 1.0, "exact": float(equal == len(KEYS)), "fields": equal / len(KEYS)}
