"""Typed settings of each detector inside a policy: an unknown key is an error, not a silently ignored option.

One class per detector, each rejecting keys it does not know (`extra="forbid"`), so `groundedness:
{treshold: 0.9}` fails the start with the file, the key and the closest valid name instead of running with
the default threshold. The checker hands detectors `model_dump()` of these, so detectors read plain dicts.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Action = Literal["allow", "flag", "redact", "block"]

# Entity types the pii detector knows: structured ones (regex + checksum) and named entities (NER model).
STRUCTURED_PII = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS")
NER_PII = ("PERSON", "LOCATION", "ORGANIZATION")
SECRET_TYPES = ("PRIVATE_KEY", "API_KEY", "TOKEN")


class DetectorPolicy(BaseModel):
    """Settings every detector has: on/off, the action for its findings, per-type overrides, a score floor."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    action: Action = Field("block", description="Action for this detector's findings.")
    actions: dict[str, Action] = Field(
        default_factory=dict, description="Per entity or category override, e.g. {EMAIL: redact, CREDIT_CARD: block}."
    )
    min_score: float = Field(0.0, ge=0, le=1, description="Findings scoring below this are dropped.")

    @field_validator("actions")
    @classmethod
    def _upper_keys(cls, value: dict[str, Action]) -> dict[str, Action]:
        return {k if k.islower() else k.upper(): v for k, v in value.items()}


class LengthPolicy(DetectorPolicy):
    """`length`: characters and model tokens."""

    max_chars: int | None = Field(None, ge=1, description="Longest text in characters.")
    max_tokens: int | None = Field(None, ge=1, description="Longest text in MiniLM WordPiece tokens.")


ChatRole = Literal["system", "developer", "user", "assistant"]  # the roles judged in input mode
# Who the learned harmful-request model reads by default: every input-mode role, because a caller of the
# OpenAI-compatible API writes them all (a harmful request moved into a system message escaped a user-only model,
# and the history's assistant turns are the caller's to fabricate too). Measured before choosing (after the
# retrain with application system prompts as negatives): 0 of 785 CyberSecEval system prompts and 0 of 7 platform
# templates read as harmful requests; on assistant turns, 20 refusals and careful answers written for the check,
# 2 blocked by the rules and none more by the model, 0 of 1,800 held-out documentation passages; AdvBench's
# "Sure, here is ..." targets as assistant turns 0.22 rules alone, 0.33 with the model (trained on the goals).
HARMFUL_MODEL_ROLES: list[ChatRole] = ["system", "developer", "user", "assistant"]
# Threat model per role for the prompt_extraction category ("asks the model to disclose a secret, password, key or
# its system prompt"): an extraction is an attack when someone other than the secret's owner asks. The system and
# developer messages are written by the API caller, who wrote the secret and the system prompt themselves: a
# "reveal the password" there (mostly inside "do not reveal the password 'X'", the secret-keeper prompt every
# prompt-injection lesson starts with) extracts nothing from anyone. So by default those findings do not count in
# input-mode system and developer messages; the user's and the assistant turns still block, and so do injection
# and jailbreak findings (rules and model) in every role: a jailbreak placed in a system message still blocks.
# Measured (bench/guardrails_system_prompts.py, CyberSecEval's test_case_prompts as system messages): these rules
# were the only finding on 32 of the 662 non-English ones (4.8 %); the other 23 blocked prompts (10 of 123 English)
# were the learned model's, fixed by training it on the genre (training/system_prompts.py).
EXTRACTION_EXEMPT_ROLES: list[ChatRole] = ["system", "developer"]


class InjectionPolicy(DetectorPolicy):
    """`injection`: prompt injection and jailbreak (rules, learned model, decoded payloads)."""

    model_threshold: float | None = Field(None, ge=0, le=1, description="null: the trained artifact's threshold.")
    decode_payloads: bool = Field(True, description="Decode base64/hex/%-encoded runs and check them too.")
    use_model: bool = Field(True, description="Run the learned model (off: rules only).")
    harmful_requests: bool = Field(
        True,
        description="Input mode: also find plainly harmful requests (weapons, violence, hard drugs, fraud, breaking "
        "into others' accounts, self-harm, hate, abuse of children) as category `harmful_request`; "
        "`actions: {harmful_request: flag}` flags instead of applying `action`. Rules, and the artifact's "
        "learned harmful-request model when it has one and `use_model` is on.",
    )
    harmful_threshold: float | None = Field(
        None, ge=0, le=1, description="null: the artifact's harmful-request threshold (higher flags fewer)."
    )
    harmful_model_roles: list[ChatRole] = Field(
        default_factory=lambda: HARMFUL_MODEL_ROLES.copy(),
        description="Chat roles whose messages the learned harmful-request model reads (a single `text` check is "
        "always read; retrieved context and tool results, judged in content mode, never are). Default: every "
        "input-mode role: through the OpenAI-compatible API the caller writes the system, developer and "
        "assistant messages too, so a harmful request moved out of the user message is still read (the model "
        "trained on application system prompts that name the harms they refuse, so an application's own "
        "template passes). Narrow it (e.g. `[user]`) only for callers you trust to write the rest. The "
        "harmful-request rules read every input-mode message whatever this says.",
    )
    extraction_exempt_roles: list[ChatRole] = Field(
        default_factory=lambda: EXTRACTION_EXEMPT_ROLES.copy(),
        description="Chat roles whose input-mode messages do not get `prompt_extraction` findings (requests to "
        "disclose a secret, a password or the system prompt). Default [system, developer]: the API caller writes "
        "those and the secrets in them, so \"do not reveal the password 'X'\" is an application's prompt, not an "
        "extraction. A user message (and a single `text` check) always gets them; so does content (a planted "
        '"reveal the password" in a document or tool result); injection and jailbreak findings count in every '
        "role. `[]` applies the category everywhere.",
    )


class PiiPolicy(DetectorPolicy):
    """`pii`: structured identifiers (checksums) and, when listed, names/places/organisations (NER model)."""

    entities: list[str] | None = Field(
        None, description=f"Types to look for; default the structured ones. Known: {[*STRUCTURED_PII, *NER_PII]}."
    )
    ner_max_chars: int = Field(
        5_000,
        ge=0,
        description="The NER model reads at most this many characters of each text (about 25 ms per 1,000 on "
        "one core); names beyond are not looked for. The structured types are read everywhere.",
    )

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: list[str] | None) -> list[str] | None:
        return _known_types(value, (*STRUCTURED_PII, *NER_PII))


class SecretsPolicy(DetectorPolicy):
    """`secrets`: API keys, tokens, private keys."""

    entities: list[str] | None = Field(None, description=f"Types to look for; default all of {list(SECRET_TYPES)}.")

    @field_validator("entities")
    @classmethod
    def _known_entities(cls, value: list[str] | None) -> list[str] | None:
        return _known_types(value, SECRET_TYPES)


class DenylistPolicy(DetectorPolicy):
    """`denylist`: whole-word terms and regular expressions."""

    terms: list[str] = Field(default_factory=list, description="Whole words or phrases, matched case-insensitively.")
    patterns: list[str] = Field(default_factory=list, description="Regular expressions (on the normalised text).")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for raw in value:
            try:
                re.compile(raw)
            except re.error as exc:
                raise ValueError(f"bad pattern {raw!r}: {exc}") from exc
        return value


class TopicSpec(BaseModel):
    """One denied topic: keywords and/or example phrases compared by similarity."""

    model_config = ConfigDict(extra="forbid")

    keywords: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)
    threshold: float = Field(0.8, ge=0, le=1, description="Cosine similarity to the examples' centroid.")


class TopicsPolicy(DetectorPolicy):
    """`topics`: denied topics."""

    denied: dict[str, TopicSpec] = Field(default_factory=dict)


class CanaryPolicy(DetectorPolicy):
    """`canary`: strings planted in the system prompt that must not come back."""

    canaries: list[str] = Field(default_factory=list)


class JsonSchemaPolicy(DetectorPolicy):
    """`json_schema`: the answer must validate against the request's schema (no options)."""


class GroundednessPolicy(DetectorPolicy):
    """`groundedness`: every answer sentence must rest on the supplied context."""

    threshold: float = Field(0.55, ge=0, le=1, description="Similarity a sentence needs to some passage.")
    min_overlap: float = Field(0.6, ge=0, le=1, description="Or: share of its content words found in the context.")
    max_passages: int = Field(32, ge=1, description="Context passages read.")
    max_sentences: int = Field(64, ge=1, description="Answer sentences checked.")


def _known_types(value: list[str] | None, known: tuple[str, ...]) -> list[str] | None:
    if value is None:
        return None
    upper = [v.upper() for v in value]
    unknown = [v for v in upper if v not in known]
    if unknown:
        raise ValueError(f"unknown entity type(s) {unknown}{suggest(unknown[0], known)}; known: {list(known)}")
    return upper


def suggest(word: str, candidates: typing.Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close name exists, else ''."""
    close = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The (nested) model class an error location points into, following fields, dict values and lists."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return current
        current = field.annotation
        while typing.get_origin(current) in (dict, list, typing.Union, types.UnionType):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[-1] if args else None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def explain(exc: ValidationError, model: type[BaseModel], where: str) -> str:
    """A one-line-per-problem message naming the key path and, for a typo, the closest valid key."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join([where, *(str(p) for p in loc)])
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1]) or model
            hint = suggest(str(loc[-1]), owner.model_fields) or f" (valid keys: {sorted(owner.model_fields)})"
            lines.append(f"{path}: unknown key {loc[-1]!r}{hint}")
        else:
            lines.append(f"{path}: {err['msg']}")
    return "; ".join(lines)
