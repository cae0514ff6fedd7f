"""Deterministic content for the fake provider: text, tool calls, JSON, embeddings, audio, images."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import random
import re
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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


# --- Generation plans -----------------------------------------------------------------------------
@dataclass
class ToolCallPlan:
    """One function call: ids, name, arguments and their streamed fragments."""

    call_id: str
    item_id: str
    name: str
    arguments: str
    pieces: list[str]


@dataclass
class ChoicePlan:
    """What one choice (or Responses output) says, before it is rendered to any wire format."""

    text: str | None = None
    pieces: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallPlan] = field(default_factory=list)
    finish_reason: str = "stop"  # stop | length | tool_calls
    completion_tokens: int = 0


@dataclass
class GenRequest:
    """Endpoint-neutral generation parameters extracted from a request body."""

    seed: int
    n: int = 1
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)  # {"name", "parameters"}
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    after_tool_result: bool = False
    json_schema: dict[str, Any] | None = None  # set for json_object / json_schema output
    exact_tokens: int | None = None
    bad_tool_args: bool = False


def forced_name(tool_choice: Any) -> str | None:
    """Function named by tool_choice, in the chat or the Responses shape (None if not forced)."""
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        return (fn or {}).get("name") if isinstance(fn, dict) else tool_choice.get("name")
    return None


def _pick_tools(req: GenRequest, rng: random.Random) -> list[dict[str, Any]]:
    if not req.tools or req.tool_choice == "none":
        return []
    forced = forced_name(req.tool_choice)
    if forced is not None:
        return [t for t in req.tools if t["name"] == forced][:1]
    if req.tool_choice != "required" and req.after_tool_result:
        return []  # like a model that answers once it has seen the tool results
    if req.parallel_tool_calls and len(req.tools) > 1:
        k = rng.randint(2, min(3, len(req.tools)))
        chosen = set(rng.sample(range(len(req.tools)), k))
        return [t for i, t in enumerate(req.tools) if i in chosen]
    return [rng.choice(req.tools)]


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def plan_choices(req: GenRequest, lo: int, hi: int) -> list[ChoicePlan]:
    """Generate `req.n` choices deterministically from `req.seed`."""
    plans: list[ChoicePlan] = []
    for index in range(req.n):
        rng = random.Random(stable_hash(req.seed, index))
        tools = _pick_tools(req, rng)
        plans.append(_plan_tools(req, rng, tools, index) if tools else _plan_text(req, rng, lo, hi))
    return plans


def _plan_text(req: GenRequest, rng: random.Random, lo: int, hi: int) -> ChoicePlan:
    if req.json_schema is not None:
        pieces = split_tokens(dumps_compact(gen_from_schema(req.json_schema, rng)))
    else:
        pieces = gen_pieces(rng, req.exact_tokens or answer_length(rng, lo, hi))
    finish = "stop"
    text = "".join(pieces)
    if req.stop:
        text, _ = _cut_at_stop(text, req.stop)
        pieces = split_tokens(text)
    if req.max_tokens is not None and len(pieces) > req.max_tokens:
        pieces, finish = pieces[: req.max_tokens], "length"
        text = "".join(pieces)
    return ChoicePlan(text=text, pieces=pieces, finish_reason=finish, completion_tokens=len(pieces))


def _plan_tools(req: GenRequest, rng: random.Random, tools: list[dict[str, Any]], index: int) -> ChoicePlan:
    budget = req.max_tokens if req.max_tokens is not None else 1 << 30
    calls: list[ToolCallPlan] = []
    used = 0
    finish = "tool_calls"
    for i, tool in enumerate(tools):
        args = dumps_compact(gen_from_schema(tool.get("parameters") or {"type": "object"}, rng))
        if req.bad_tool_args:
            args = args[:-1].replace('"', "'")  # unterminated, single-quoted: not JSON
        name_cost = count_tokens(tool["name"])
        if used + name_cost > budget:
            finish = "length"
            break
        used += name_cost
        pieces = split_tokens(args)
        if used + len(pieces) > budget:
            pieces, finish = pieces[: budget - used], "length"
        used += len(pieces)
        seed = stable_hash(req.seed, index, i, "call")
        calls.append(
            ToolCallPlan(
                "call_" + short_id(seed),
                "fc_" + short_id(seed + 1, 48, "0123456789abcdef"),
                tool["name"],
                "".join(pieces),
                pieces,
            )
        )
        if finish == "length":
            break
    return ChoicePlan(text=None, tool_calls=calls, finish_reason=finish, completion_tokens=used)


def chunk_pieces(pieces: list[str], per_chunk: int) -> list[str]:
    """Group token pieces into stream chunks of `per_chunk` tokens."""
    if per_chunk <= 1:
        return pieces
    return ["".join(pieces[i : i + per_chunk]) for i in range(0, len(pieces), per_chunk)]


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


# --- Embeddings -----------------------------------------------------------------------------------
_EMBED_WORD_RE = re.compile(r"\w+")


def model_dims(model: str) -> int:
    """Native embedding size for an embedding model name."""
    return 3072 if "large" in model else 1536


def _unit_noise(key: str, dims: int) -> np.ndarray:
    rng = np.random.default_rng(stable_hash("emb", key, dims))
    vec = rng.standard_normal(dims)
    vec /= np.linalg.norm(vec)
    vec.setflags(write=False)
    return vec


# Word vectors recur (a vocabulary); whole texts mostly do not, so only words are cached (<= ~24 MB).
_word_noise = functools.lru_cache(maxsize=1024)(_unit_noise)


def embed(text: str, model: str, dims: int | None = None) -> np.ndarray:
    """Unit float32 vector: bag of hashed word vectors + a whole-text part.

    Identical text gives an identical vector; texts sharing words have higher cosine similarity.
    A reduced `dims` is a truncated, renormalised prefix, like text-embedding-3 models.
    """
    full = model_dims(model)
    vec = np.zeros(full)
    for word in _EMBED_WORD_RE.findall(text.lower()):
        vec += _word_noise(model + "|" + word, full)
    vec += 0.5 * _unit_noise(model + "||" + text, full)
    vec = vec[: dims or full]
    return (vec / np.linalg.norm(vec)).astype(np.float32)


def embedding_b64(vec: np.ndarray) -> str:
    """OpenAI's base64 encoding: little-endian float32 bytes."""
    return base64.b64encode(vec.astype("<f4").tobytes()).decode()


# --- Audio ----------------------------------------------------------------------------------------
def audio_duration(data: bytes) -> float:
    """Seconds of audio: exact for PCM WAV, else estimated at 128 kbit/s."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        pos, byte_rate = 12, 0
        while pos + 8 <= len(data):
            tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
            if tag == b"fmt " and size >= 12:
                byte_rate = struct.unpack("<I", data[pos + 16 : pos + 20])[0]
            elif tag == b"data" and byte_rate:
                return round(min(size, len(data) - pos - 8) / byte_rate, 3)
            pos += 8 + size + (size & 1)
    return round(len(data) / 16000.0, 3)


@dataclass
class Transcript:
    """A fake transcript with word and segment timings."""

    text: str
    duration: float
    words: list[dict[str, Any]]
    segments: list[dict[str, Any]]


def transcribe(data: bytes, seed: int) -> Transcript:
    """Deterministic transcript from a hash of the audio bytes (~2.5 words per second)."""
    duration = audio_duration(data)
    rng = random.Random(stable_hash(hashlib.sha256(data).digest(), seed))
    text = gen_text(rng, max(4, int(duration * 2.9)))
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", text) if s.strip()]
    total_chars = max(1, sum(len(s) for s in sentences))
    segments, words, t = [], [], 0.0
    for i, sentence in enumerate(sentences):
        span = duration * len(sentence) / total_chars
        seg_words = sentence.split()
        for j, word in enumerate(seg_words):
            w0 = t + span * j / len(seg_words)
            words.append(
                {"word": word.strip(".,"), "start": round(w0, 2), "end": round(w0 + span / len(seg_words), 2)}
            )
        segments.append(
            {
                "id": i,
                "seek": int(t * 100),
                "start": round(t, 2),
                "end": round(t + span, 2),
                "text": " " + sentence,
                "tokens": [50364 + stable_hash(w) % 1000 for w in seg_words],
                "temperature": 0.0,
                "avg_logprob": round(-0.1 - rng.random() * 0.3, 4),
                "compression_ratio": round(1.2 + rng.random() * 0.4, 4),
                "no_speech_prob": round(rng.random() * 0.01, 6),
            }
        )
        t += span
    return Transcript(text=text, duration=duration, words=words, segments=segments)


def _stamp(t: float, sep: str) -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def subtitles(tr: Transcript, kind: str) -> str:
    """SRT or WebVTT text for a transcript."""
    if kind == "srt":
        blocks = [
            f"{i + 1}\n{_stamp(s['start'], ',')} --> {_stamp(s['end'], ',')}\n{s['text'].strip()}\n"
            for i, s in enumerate(tr.segments)
        ]
        return "\n".join(blocks) + "\n"
    blocks = [
        f"{_stamp(s['start'], '.')} --> {_stamp(s['end'], '.')}\n{s['text'].strip()}\n" for s in tr.segments
    ]
    return "WEBVTT\n\n" + "\n".join(blocks) + "\n"


# --- Images ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def make_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid solid-colour RGB PNG of the given size."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    raw = (b"\x00" + bytes(rgb) * width) * height
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def image_size(size: Any) -> tuple[int, int]:
    """Parse "WxH" (anything else, e.g. "auto", means 1024x1024); capped at 2048 a side."""
    m = re.fullmatch(r"(\d{1,4})x(\d{1,4})", str(size or ""))
    w, h = (int(m.group(1)), int(m.group(2))) if m else (1024, 1024)
    return max(1, min(w, 2048)), max(1, min(h, 2048))


def colour_for(seed: int) -> tuple[int, int, int]:
    """A deterministic colour for an image seed."""
    return (seed >> 16 & 255, seed >> 8 & 255, seed & 255)


# --- Moderation -----------------------------------------------------------------------------------
MODERATION_CATEGORIES = (
    "harassment harassment/threatening hate hate/threatening illicit illicit/violent self-harm "
    "self-harm/instructions self-harm/intent sexual sexual/minors violence violence/graphic"
).split()
_TRIGGERS = {
    "kill": "violence",
    "murder": "violence",
    "attack": "violence",
    "hate": "hate",
    "suicide": "self-harm",
}


def moderate(text: str) -> dict[str, Any]:
    """One moderation result: tiny hashed scores, high ones for a few trigger words."""
    rng = random.Random(stable_hash("mod", text))
    scores = {c: round(rng.random() * 1e-4, 8) for c in MODERATION_CATEGORIES}
    for word in _EMBED_WORD_RE.findall(text.lower()):
        if word in _TRIGGERS:
            scores[_TRIGGERS[word]] = round(0.9 + rng.random() * 0.09, 6)
    categories = {c: s > 0.5 for c, s in scores.items()}
    applied = {c: ["text"] for c in MODERATION_CATEGORIES}
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    }
