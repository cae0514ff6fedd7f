"""Deterministic text for the fake provider: token counts, seeds and ids, English-looking prose, JSON from a schema.

What a choice says is planned in ``plans.py``; embeddings, audio, images and moderation are in ``media.py``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
import uuid
from typing import Any

# One "token" = a run of up to 8 word characters, or up to 3 punctuation characters (so JSON splits
# like OpenAI's: '{"', 'city', '":"', 'Paris', '"}'). Close enough to BPE for realistic sizes, and
# cheap. Every count in the fake (prompt, completion, stream chunks) uses it.
_TOKEN_RE = re.compile(r"\w{1,8}|[^\w\s]{1,3}")
_PIECE_RE = re.compile(r"\s*(?:\w{1,8}|[^\w\s]{1,3})")


def count_tokens(text: str) -> int:
    """Number of tokens in `text` (the single token counter used everywhere)."""
    if 256 < len(text) <= 32768:  # long prompts recur across replayed requests; cache holds <= 32 MB
        return _count_cached(text)
    return len(_TOKEN_RE.findall(text))


@functools.lru_cache(maxsize=1024)
def _count_cached(text: str) -> int:
    return len(_TOKEN_RE.findall(text))


def split_tokens(text: str) -> list[str]:
    """Split `text` into pieces of exactly one token each; "".join(pieces) == text."""
    pieces = _PIECE_RE.findall(text)
    tail = text[len(text.rstrip()) :]
    if tail:  # trailing whitespace belongs to the last piece, it is not a token of its own
        if pieces:
            pieces[-1] += tail
        else:
            pieces = [tail]
    return pieces


def stable_hash(*parts: Any) -> int:
    """64-bit hash of the parts, stable across processes (unlike hash())."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


# Left out of the content hash so that stream/non-stream, n and the length limits all see the same
# underlying answer: a cut answer is then a prefix of the uncut one, which makes replays comparable.
_HASH_EXCLUDE = frozenset(
    {"stream", "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens", "stop", "n"}
)


def request_seed(body: dict[str, Any], seed: int) -> int:
    """Content seed for a request: hash of the canonical body (minus length/stream knobs) + seed."""
    canon = json.dumps(
        {k: v for k, v in body.items() if k not in _HASH_EXCLUDE},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return stable_hash(canon, seed)


def short_id(
    seed: int, n: int = 24, alphabet: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
) -> str:
    """Deterministic id body like OpenAI's base62 ids."""
    digest = hashlib.blake2b(str(seed).encode(), digest_size=min(64, n)).digest()
    return "".join(alphabet[b % len(alphabet)] for b in (digest * (n // len(digest) + 1))[:n])


# --- English-looking text -------------------------------------------------------------------------
# All words are <= 8 letters so each is exactly one token.
_DET = "the a this each every that our your its one".split()
_ADJ = (
    "quick simple clear modern useful small large careful stable common general robust smooth gentle "
    "bright early recent formal precise similar typical strong final natural open visible quiet rapid "
    "direct careful hidden public local global basic complex narrow broad steady"
).split()
_NOUN = (
    "system model answer request process method result problem question network server client library "
    "project feature example record value pattern detail context section summary report approach change "
    "version option service team user policy story city river garden window signal market budget design "
    "protocol channel query cluster account journey surface engine memory"
).split()
_VERB = (
    "supports improves explains returns creates handles shows needs reduces provides follows includes "
    "outlines measures connects tracks compares reveals builds shapes guides changes protects reaches"
).split()
_PREP = "with for in on across under through about between after before within beyond".split()
_ADV = "often usually quickly clearly rarely simply mostly always slowly gently finally".split()
_CONJ = "and but while because so although".split()
_OPENER = ["However", "In general", "For example", "In practice", "Overall", "Today", "Often", "Still"]
_ENDINGS = "today again here now too".split()
_PLACES = "Paris London Tokyo Berlin Madrid Rome Boston Chicago Sydney Toronto Lisbon Oslo Seoul".split()
_COUNTRIES = "France Japan Germany Spain Italy Canada Brazil Norway Kenya Chile India Peru".split()
_NAMES = "Alice Bob Carol David Erin Frank Grace Heidi Ivan Judy Mallory Oscar Peggy".split()


def _sentence(rnd: Any, sep: str) -> list[str]:
    """One sentence as one-token pieces (leading space on words, none on punctuation)."""

    def pick(words: list[str]) -> str:
        return words[int(rnd() * len(words))]  # ~3x cheaper than rng.choice; this is the hot path

    words: list[str] = []
    if rnd() < 0.2:
        words += pick(_OPENER).split() + [","]
    words += [pick(_DET)] + ([pick(_ADJ)] if rnd() < 0.6 else []) + [pick(_NOUN)]
    if rnd() < 0.3:
        words.append(pick(_ADV))
    words += [pick(_VERB), pick(_DET)] + ([pick(_ADJ)] if rnd() < 0.5 else []) + [pick(_NOUN)]
    if rnd() < 0.5:
        words += [pick(_PREP), pick(_DET), pick(_NOUN)]
    if rnd() < 0.3:
        words += [",", pick(_CONJ), pick(_DET), pick(_NOUN), pick(_VERB), pick(_DET), pick(_NOUN)]
    first = words[0]
    pieces = [sep + first[0].upper() + first[1:]]
    for word in words[1:]:
        if word == ",":
            pieces.append(word)
            continue
        if word[0] in "aeiou" and pieces[-1].strip() in ("a", "A"):
            pieces[-1] += "n"  # "an", not "a", before a vowel
        pieces.append(" " + word)
    pieces.append(".")
    return pieces


def gen_pieces(rng: random.Random, n_tokens: int) -> list[str]:
    """English-looking prose as exactly `n_tokens` one-token pieces, ending in a full stop."""
    rnd = rng.random
    pieces: list[str] = []
    while len(pieces) < n_tokens:
        sep = "" if not pieces else ("\n\n" if rnd() < 0.12 else " ")
        pieces += _sentence(rnd, sep)
    del pieces[n_tokens:]
    if n_tokens > 1 and pieces[-1] != ".":
        pieces[-1] = "."
        if not pieces[-2][-1:].isalnum():  # avoid ".." or ",." where a sentence had just ended
            pieces[-2] = " " + _ENDINGS[int(rnd() * len(_ENDINGS))]
    return pieces


def gen_text(rng: random.Random, n_tokens: int) -> str:
    """English-looking prose of exactly `n_tokens` tokens, ending in a full stop."""
    return "".join(gen_pieces(rng, n_tokens))


def answer_length(rng: random.Random, lo: int, hi: int) -> int:
    """Answer length in tokens, skewed towards short answers (median ~ lo + (hi-lo)/4)."""
    return lo + int((hi - lo) * rng.random() ** 2)


# --- JSON from a JSON schema ----------------------------------------------------------------------
DEFAULT_OBJECT_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["answer", "confidence", "tags"],
}


def _resolve_ref(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _gen_string(schema: dict[str, Any], rng: random.Random, hint: str) -> str:
    fmt = schema.get("format")
    h = hint.lower()
    if fmt == "date":
        value = f"20{rng.randint(20, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    elif fmt == "date-time":
        value = f"20{rng.randint(20, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    elif fmt == "time":
        value = f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00"
    elif fmt == "email" or "email" in h:
        value = f"{rng.choice(_NAMES).lower()}.{rng.choice(_NOUN)}@example.com"
    elif fmt in ("uri", "url") or h in ("url", "uri", "link", "website"):
        value = f"https://example.com/{rng.choice(_NOUN)}/{rng.randint(1, 999)}"
    elif fmt == "uuid":
        value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    elif any(k in h for k in ("city", "location", "place", "destination", "origin")):
        value = rng.choice(_PLACES)
    elif "country" in h:
        value = rng.choice(_COUNTRIES)
    elif "name" in h or h in ("person", "author", "user"):
        value = rng.choice(_NAMES)
    else:
        value = " ".join(rng.choice(_ADJ + _NOUN) for _ in range(rng.randint(1, 4)))
    lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
    if len(value) < lo:
        value += "x" * (lo - len(value))
    if hi is not None:
        value = value[: int(hi)]
    return value


def _gen_number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum", 0 if integer else 0.0))
    hi = schema.get("maximum", schema.get("exclusiveMaximum", lo + (100 if integer else 100.0)))
    if integer:
        lo_i = int(lo) + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
        hi_i = int(hi) - (1 if "exclusiveMaximum" in schema and "maximum" not in schema else 0)
        value = rng.randint(lo_i, max(lo_i, hi_i))
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            value = max(lo_i, value - value % step)
        return value
    return round(rng.uniform(float(lo), float(hi)), 3) if hi > lo else float(lo)


def gen_from_schema(schema: Any, rng: random.Random, root: Any = None, depth: int = 0, hint: str = "") -> Any:
    """A JSON value that validates against `schema` (common keywords; `pattern` is not honoured)."""
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return _gen_string({}, rng, hint)  # `true` / missing schema: anything goes
    if "$ref" in schema:
        if depth > 8:
            return None
        return gen_from_schema(_resolve_ref(schema["$ref"], root), rng, root, depth + 1, hint)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if not (isinstance(s, dict) and s.get("type") == "null")]
            return gen_from_schema(rng.choice(options or schema[key]), rng, root, depth + 1, hint)
    if schema.get("allOf"):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            sub = _resolve_ref(sub["$ref"], root) if isinstance(sub, dict) and "$ref" in sub else sub
            for k, v in (sub or {}).items():
                if k == "properties":
                    merged.setdefault("properties", {}).update(v)
                elif k == "required":
                    merged["required"] = list(merged.get("required", [])) + list(v)
                else:
                    merged.setdefault(k, v)
        return gen_from_schema(merged, rng, root, depth + 1, hint)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((t for t in kind if t != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props: dict[str, Any] = schema.get("properties") or {}
        required = list(schema.get("required", []))
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if name in required or (depth < 4 and rng.random() < 0.5):
                out[name] = gen_from_schema(sub, rng, root, depth + 1, name)
        for name in required:  # required names without a property schema
            out.setdefault(name, _gen_string({}, rng, name))
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict) and depth < 4:
            for _ in range(max(1, int(schema.get("minProperties", 1)))):
                out[rng.choice(_NOUN)] = gen_from_schema(extra, rng, root, depth + 1)
        return out
    if kind == "array":
        lo = int(schema.get("minItems", 1 if depth < 4 else 0))
        hi = int(schema.get("maxItems", max(lo, 3)))
        prefix = schema.get("prefixItems") or []
        count = max(len(prefix), rng.randint(lo, max(lo, hi)))
        if schema.get("items") is False:  # a closed tuple: exactly the prefix
            count = len(prefix)
        items: list[Any] = []
        for i in range(count * 5):  # retries only matter for uniqueItems
            if len(items) >= count:
                break
            sub = prefix[len(items)] if len(items) < len(prefix) else schema.get("items", {})
            value = gen_from_schema(sub, rng, root, depth + 1, hint)
            if schema.get("uniqueItems") and value in items and i < count * 5 - 1:
                continue
            items.append(value)
        return items
    if kind == "string":
        return _gen_string(schema, rng, hint)
    if kind == "integer":
        return _gen_number(schema, rng, integer=True)
    if kind == "number":
        return _gen_number(schema, rng, integer=False)
    if kind == "boolean":
        return rng.random() < 0.5
    return None


def dumps_compact(value: Any) -> str:
    """JSON the way OpenAI models emit it (no spaces)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- Prompt text ----------------------------------------------------------------------------------
_SKIP_KEYS = frozenset({"image_url", "input_audio", "file", "file_data", "image", "audio", "data", "url"})
_META_KEYS = frozenset({"role", "type", "id", "tool_call_id", "call_id", "status", "detail", "format"})


def collect_text(value: Any, out: list[str] | None = None) -> list[str]:
    """All human-readable strings in a messages/input structure (binary payloads skipped)."""
    out = [] if out is None else out
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            collect_text(item, out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _SKIP_KEYS and key not in _META_KEYS:
                collect_text(item, out)
    return out


def prompt_tokens(messages: Any, tools: Any = None) -> int:
    """Prompt token count over all message text plus the tool definitions (as JSON).

    Counted per text so repeated system prompts hit the cache; the "\n" joints add no tokens.
    """
    texts = collect_text(messages)
    if tools:
        texts.append(dumps_compact(tools))
    return sum(count_tokens(t) for t in texts)
