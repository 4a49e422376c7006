"""Normalisation before detection: attackers hide instructions from word lists, so undo the usual tricks first.

Every view keeps an index map back to the caller's text, so a finding on a normalised view still points at
the right characters of the original. Layers, in order:
  1. Unicode: NFKC per character (fullwidth, mathematical letters, ligatures), invisible/format characters
     dropped, Unicode "tag" characters (ASCII smuggling) turned back into the ASCII they hide, common
     Cyrillic/Greek homoglyphs folded to Latin, lower case.
  2. Spacing tricks: "i g n o r e" / "i.g.n.o.r.e" collapsed into words (a second view).
  3. Leetspeak: digits and symbols inside words read as letters (a third view).
  4. Encoded payloads: base64, hex and %-encoded runs decoded, then checked again by the caller.
"""

# ruff: noqa: RUF001  (the homoglyph table is made of look-alike letters on purpose)
from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

import numpy as np

# Homoglyphs NFKC leaves alone (Cyrillic and Greek letters that render like Latin ones).
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
        "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "һ": "h",
        "ԛ": "q", "ԝ": "w", "ո": "n", "ս": "u", "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k",
        "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ı": "i", "ł": "l", "ø": "o",
        "\u2018": "'", "\u2019": "'", "\u201c": "\"", "\u201d": "\"",
    }
)  # fmt: skip
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
# Starts only where a run of word-ish characters starts, and looks at most 40 ahead: linear on any input.
_LEET_WORD = re.compile(r"(?<![a-z0-9@$!])(?=[a-z0-9@$!]{0,40}[a-z])(?=[a-z0-9@$!]{0,40}[0-9@$!])[a-z0-9@$!]{3,40}")
# Three or more single letters separated by one space/dot/dash/underscore/star: "i g n o r e".
_SPACED = re.compile(r"(?<![^\W_])(?:[^\W\d_][ .\-_*]){2,}[^\W\d_](?![^\W_])")
_B64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}|[A-Za-z0-9\-_]{24,}={0,2}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2}[ :]?){12,}")
_PCT = re.compile(r"(?:%[0-9a-fA-F]{2}){4,}")
_BLOB = re.compile(r"[A-Za-z0-9+/=_\-]{32,}")
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]")
_ROT13_HINT = re.compile(r"rot-?13", re.IGNORECASE)


@dataclass(frozen=True)
class View:
    """A normalised rendering of the input; `index[i]` is the original offset of `text[i]`."""

    name: str
    text: str
    index: list[int]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a [start, end) span of this view back to the original text."""
        if not self.index:
            return 0, 0
        start = min(max(start, 0), len(self.index) - 1)
        end = min(max(end, start + 1), len(self.index))
        return self.index[start], self.index[end - 1] + 1


@dataclass(frozen=True)
class Payload:
    """A decoded payload found inside the text, with where its encoded form sits in the original."""

    encoding: str
    text: str
    start: int
    end: int


def _is_invisible(ch: str) -> bool:
    # Format (Cf) covers zero-width space/joiners, bidi overrides, BOM, soft hyphen; also variation selectors.
    cat = unicodedata.category(ch)
    return cat == "Cf" or (cat == "Mn" and "\ufe00" <= ch <= "\ufe0f")


@lru_cache(maxsize=65_536)
def _fold_char(ch: str) -> str:
    """What one non-ASCII character becomes in the canonical view ("" when it is dropped)."""
    code = ord(ch)
    if 0xE0020 <= code <= 0xE007E:  # Unicode tag characters smuggle invisible ASCII
        return chr(code - 0xE0000).lower()
    if _is_invisible(ch):
        return ""
    # Turkish capital dotted I lower-cases to "i" + a combining dot: "TALİMAT" would not read as "talimat".
    return unicodedata.normalize("NFKC", ch).lower().replace("i\u0307", "i").translate(_CONFUSABLES)


def unicode_view(text: str) -> View:
    """Layer 1: the canonical view every detector reads (lower case, NFKC, homoglyphs folded)."""
    if text.isascii():
        return View("unicode", text.lower(), list(range(len(text))))
    out: list[str] = []
    index: list[int] = []
    # ASCII runs are lower-cased in one go; only the other characters take the per-character path.
    for run in _ASCII_RUNS.finditer(text):
        start = run.start()
        chunk = run.group(0)
        if chunk.isascii():
            out.append(chunk.lower())
            index.extend(range(start, run.end()))
            continue
        folded = _fold_char(chunk)
        out.append(folded)
        index.extend([start] * len(folded))
    return View("unicode", "".join(out), index)


def despaced_view(base: View) -> View | None:
    """Layer 2: collapse letter-by-letter spelling; None when the text has none."""
    if not _SPACED.search(base.text):
        return None
    out: list[str] = []
    index: list[int] = []
    pos = 0
    for match in _SPACED.finditer(base.text):
        out.append(base.text[pos : match.start()])
        index.extend(base.index[pos : match.start()])
        for j in range(match.start(), match.end(), 2):
            out.append(base.text[j])
            index.append(base.index[j])
        pos = match.end()
    out.append(base.text[pos:])
    index.extend(base.index[pos:])
    return View("despaced", "".join(out), index)


def leet_view(base: View) -> View | None:
    """Layer 3: read 1gn0r3 as ignore; only words mixing letters and digits/symbols are rewritten."""
    if not _LEET_WORD.search(base.text):
        return None
    text = _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), base.text)
    return View("leet", text, base.index)  # the translation is 1:1, so offsets are unchanged


def _printable_ratio(text: str) -> float:
    if not text:
        return 0.0
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t")
    return good / len(text)


def _decode_bytes(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return decoded if len(decoded) >= 4 and _printable_ratio(decoded) > 0.9 else None


def decode_payloads(text: str, max_payloads: int = 8) -> list[Payload]:
    """Layer 4: decode base64, hex, %-encoded and (when announced) ROT13 runs of the original text."""
    found: list[Payload] = []
    for match in _B64.finditer(text):
        chunk = match.group(0)
        try:
            raw = base64.b64decode(
                chunk + "=" * (-len(chunk) % 4), altchars=b"-_" if "-" in chunk or "_" in chunk else None
            )
        except (binascii.Error, ValueError):
            continue
        decoded = _decode_bytes(raw)
        if decoded and " " in decoded:  # real instructions have spaces; random tokens decode to noise
            found.append(Payload("base64", decoded, match.start(), match.end()))
    for match in _HEX.finditer(text):
        digits = re.sub(r"[ :]", "", match.group(0))
        try:
            decoded = _decode_bytes(bytes.fromhex(digits[: len(digits) // 2 * 2]))
        except ValueError:
            continue
        if decoded:
            found.append(Payload("hex", decoded, match.start(), match.end()))
    for match in _PCT.finditer(text):
        decoded = unquote(match.group(0))
        if _printable_ratio(decoded) > 0.9:
            found.append(Payload("percent", decoded, match.start(), match.end()))
    if _ROT13_HINT.search(text):
        found.append(Payload("rot13", codecs.decode(text, "rot13"), 0, len(text)))
    return found[:max_payloads]


def model_text(text: str, payloads: list[Payload]) -> str | None:
    """The text the learned model should read: encoded runs (scored on their own, decoded) and undecodable
    blobs (keys, images, hashes) cut out, since their word pieces are noise that looks like nothing the
    model was trained on. None when there is nothing to cut."""
    edits = [(p.start, p.end, " ") for p in payloads if p.encoding != "rot13"]
    decoded = list(edits)
    for m in _BLOB.finditer(text):
        inside_payload = any(start < m.end() and m.start() < end for start, end, _ in decoded)
        if not inside_payload and any(ch.isdigit() for ch in m.group(0)):
            edits.append((m.start(), m.end(), " "))
    if not edits:
        return None
    out: list[str] = []
    pos = 0
    for start, end, replacement in sorted(edits):
        if start < pos:
            continue
        out.extend((text[pos:start], replacement))
        pos = end
    out.append(text[pos:])
    return "".join(out)


# Every code point `str.isspace()` (and so the regex `\s`) treats as whitespace: about thirty of them.
_SPACES = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def collapsed_view(view: View) -> View:
    """The view with whitespace runs made one space and the ends stripped (what the learned model reads,
    `features.collapse`), offsets kept. Vectorised: a per-character loop cost a millisecond per 1,000."""
    text = view.text
    plain = text.isascii() and "  " not in text and not any(c in text for c in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f")
    if plain and text[:1] != " " and text[-1:] != " ":
        return view  # the common case: nothing to collapse
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    space = np.isin(codes, _SPACES)
    keep = ~space
    keep[1:] |= space[1:] & ~space[:-1]  # the first whitespace character of each run stays (as one space)
    word = np.flatnonzero(~space)
    if word.size == 0:
        return View(view.name, "", [])
    keep[: word[0]] = False
    keep[word[-1] + 1 :] = False
    out = np.where(space, np.uint32(32), codes)[keep]
    return View(view.name, out.tobytes().decode("utf-32-le"), np.asarray(view.index)[keep].tolist())


def views(text: str, base: View | None = None) -> list[View]:
    """All normalised views of one text, canonical first (pass `base` when it is already computed)."""
    base = base or unicode_view(text)
    result = [base]
    for extra in (despaced_view(base), leet_view(base)):
        if extra is not None:
            result.append(extra)
    return result
