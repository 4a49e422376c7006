"""Synthetic prompts for drift tests and the benchmark: on-topic support questions, and off-topic ones."""

from __future__ import annotations

import random

_SUPPORT_ACTIONS = [
    "reset my password",
    "change the email on my account",
    "update my billing address",
    "cancel my subscription",
    "download last month's invoice",
    "enable two-factor authentication",
    "add a team member to my workspace",
    "get a refund for a double charge",
    "upgrade to the annual plan",
    "export my data",
    "close my account",
    "change my payment card",
    "recover a deleted project",
    "see my usage limits",
    "transfer ownership of a workspace",
]
_SUPPORT_FRAMES = [
    "How do I {a}?",
    "I can't {a}, can you help?",
    "What are the steps to {a}?",
    "Is it possible to {a} from the app?",
    "I tried to {a} but got an error.",
    "Where in the settings can I {a}?",
    "Can support {a} for me?",
]
_OFF_TOPICS = [
    "Give me a recipe for {x}.",
    "Who won the {y} final in 1998?",
    "Write a short poem about {z}.",
    "How far is {w} from Earth?",
    "What wine goes well with {x}?",
    "Explain the offside rule in {y}.",
    "Tell me a bedtime story about {z}.",
    "How many moons does {w} have?",
]
_FOODS = ["lasagna", "banana bread", "pad thai", "ratatouille", "paella", "tiramisu", "ramen", "goulash"]
_SPORTS = ["football", "tennis", "basketball", "rugby", "cricket", "hockey"]
_THINGS = ["a lonely dragon", "autumn leaves", "the ocean at night", "a brave little fox", "city rain"]
_PLANETS = ["Mars", "Jupiter", "Saturn", "Neptune", "Venus", "Uranus"]


def support_prompts(n: int, seed: int) -> list[str]:
    """Questions a SaaS support assistant normally gets."""
    rng = random.Random(seed)
    return [rng.choice(_SUPPORT_FRAMES).format(a=rng.choice(_SUPPORT_ACTIONS)) for _ in range(n)]


def off_topic_prompts(n: int, seed: int) -> list[str]:
    """Cooking, sports, poems and astronomy: traffic the assistant was not built for."""
    rng = random.Random(seed)
    return [
        rng.choice(_OFF_TOPICS).format(
            x=rng.choice(_FOODS), y=rng.choice(_SPORTS), z=rng.choice(_THINGS), w=rng.choice(_PLANETS)
        )
        for _ in range(n)
    ]
