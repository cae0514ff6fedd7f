"""Unit tests: token counting, text/JSON generation, embeddings, audio, PNG, profiles and overrides."""

from __future__ import annotations

import random
import statistics
import struct
import zlib

import jsonschema
import numpy as np
import pytest
from fakehelpers import PERSON_SCHEMA, wav_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.fake import content as C
from parity.fake import media as M
from parity.fake import plans as P
from parity.fake.profiles import (
    GATEWAY_QUIRKS,
    LEGACY_QUIRKS,
    PROFILES,
    Profile,
    get_profile,
    parse_set,
)


# --- tokens and text -------------------------------------------------------------------------------
@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_split_tokens_round_trips_and_counts(text: str) -> None:
    pieces = C.split_tokens(text)
    assert "".join(pieces) == text
    assert all(C.count_tokens(p) == 1 for p in pieces[:-1])
    assert C.count_tokens(text) == sum(C.count_tokens(p) for p in pieces)


def test_gen_text_exact_length_and_english_looking() -> None:
    for seed in range(200):
        n = 1 + seed % 120
        pieces = C.gen_pieces(random.Random(seed), n)
        text = "".join(pieces)
        assert len(pieces) == n and C.count_tokens(text) == n and C.split_tokens(text) == pieces
        if n > 1:
            assert text.endswith(".") and ".." not in text and ",." not in text and " ," not in text
        assert text[0].isupper()
    assert "a a" not in C.gen_text(random.Random(1), 2000).lower().replace("a an", "")
    words = C.gen_text(random.Random(5), 300).split()
    assert len(set(words)) > 60  # varied, not a repeated phrase


def test_answer_length_range() -> None:
    lengths = [C.answer_length(random.Random(i), 20, 300) for i in range(2000)]
    assert min(lengths) >= 20 and max(lengths) <= 300 and 60 < statistics.median(lengths) < 120


# --- JSON schema -------------------------------------------------------------------------------------
SCHEMAS = [
    PERSON_SCHEMA,
    {"type": "object", "properties": {}},
    {"type": "array", "items": {"type": "integer", "minimum": 5, "maximum": 9}, "minItems": 2, "maxItems": 4},
    {"type": "string", "format": "date-time"},
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "n": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        },
        "required": ["id", "n"],
    },
    {
        "$defs": {
            "step": {
                "type": "object",
                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                "required": ["explanation", "output"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
            "final_answer": {"type": "string"},
        },
        "required": ["steps", "final_answer"],
        "additionalProperties": False,
    },
    {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"a": {"const": 3}}, "required": ["a"]}]},
    {
        "allOf": [
            {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]},
            {"properties": {"y": {"type": "integer", "multipleOf": 5}}, "required": ["y"]},
        ]
    },
    {"type": "object", "additionalProperties": {"type": "number"}, "minProperties": 2},
    {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True, "minItems": 3},
    {"type": "string", "minLength": 12, "maxLength": 14},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
    {"type": ["integer", "null"], "minimum": -3, "maximum": -1},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_gen_from_schema_validates(schema: dict) -> None:
    for seed in range(40):
        jsonschema.validate(C.gen_from_schema(schema, random.Random(seed)), schema)


def test_tool_plan_fragments_and_token_accounting() -> None:
    req = P.GenRequest(
        seed=9, tools=[{"name": "get_weather", "parameters": PERSON_SCHEMA}], tool_choice="required"
    )
    (plan,) = P.plan_choices(req, 20, 300)
    call = plan.tool_calls[0]
    assert "".join(call.pieces) == call.arguments and plan.finish_reason == "tool_calls"
    assert plan.completion_tokens == C.count_tokens("get_weather") + C.count_tokens(call.arguments)
    cut = P.plan_choices(
        P.GenRequest(seed=9, tools=req.tools, tool_choice="required", max_tokens=6), 20, 300
    )[0]
    assert cut.finish_reason == "length" and cut.completion_tokens == 6
    assert call.arguments.startswith(cut.tool_calls[0].arguments)


# --- embeddings, audio, images -----------------------------------------------------------------------
def test_embeddings_unit_deterministic_and_similar() -> None:
    a = M.embed("the cat sat on the mat", "text-embedding-3-small")
    assert a.dtype == np.float32 and a.shape == (1536,) and abs(float(np.linalg.norm(a)) - 1) < 1e-5
    assert np.array_equal(a, M.embed("the cat sat on the mat", "text-embedding-3-small"))
    near = M.embed("the cat sat on a mat", "text-embedding-3-small")
    far = M.embed("quarterly revenue grew", "text-embedding-3-small")
    assert float(a @ near) > 0.6 > 0.2 > float(a @ far)
    short = M.embed("the cat sat on the mat", "text-embedding-3-small", 64)
    assert short.shape == (64,) and float(short @ (a[:64] / np.linalg.norm(a[:64]))) > 0.9999
    assert M.embed("x", "text-embedding-3-large").shape == (3072,)
    decoded = np.frombuffer(__import__("base64").b64decode(M.embedding_b64(a)), dtype="<f4")
    assert np.array_equal(decoded, a)


def test_audio_duration_and_transcript() -> None:
    assert M.audio_duration(wav_bytes(2.5)) == 2.5
    assert M.audio_duration(wav_bytes(1.0, rate=8000)) == 1.0
    assert M.audio_duration(b"\xff\xfb" + bytes(31998)) == 2.0  # not WAV: 128 kbit/s estimate
    tr = M.transcribe(wav_bytes(6.0), 0)
    assert tr.text == M.transcribe(wav_bytes(6.0), 0).text != M.transcribe(wav_bytes(6.1), 0).text
    assert tr.segments[0]["start"] == 0 and tr.segments[-1]["end"] == pytest.approx(6.0)
    assert 10 <= len(tr.words) <= 25
    vtt = M.subtitles(tr, "vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ")


def test_png_is_valid() -> None:
    png = M.make_png(7, 3, (10, 20, 30))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        tag, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(tag + data)
        chunks[tag] = data
        pos += 12 + length
    assert struct.unpack(">II", chunks[b"IHDR"][:8]) == (7, 3)
    assert zlib.decompress(chunks[b"IDAT"]) == (b"\x00" + bytes([10, 20, 30]) * 7) * 3
    assert M.image_size("256x512") == (256, 512) and M.image_size("auto") == (1024, 1024)


def test_moderation() -> None:
    bad = M.moderate("I will kill them")
    assert (
        bad["flagged"]
        and bad["categories"]["violence"]
        and set(bad["categories"]) == set(M.MODERATION_CATEGORIES)
    )
    assert not M.moderate("lovely weather")["flagged"]


# --- profiles --------------------------------------------------------------------------------------
def test_named_profiles() -> None:
    older = {"openai-like", "fast", "slow", "flaky", "cold-start", "quirky", "instant", "capacity"}
    gateway = {q.replace("_", "-") for q in GATEWAY_QUIRKS}
    assert set(PROFILES) == older | gateway
    for name in gateway:  # one deviation each, on OpenAI's timing
        assert PROFILES[name].quirks == (name.replace("-", "_"),)
        assert PROFILES[name].ttft_ms == PROFILES["openai-like"].ttft_ms
    assert all(p.description for p in PROFILES.values())
    assert PROFILES["instant"].ttft_ms == 0 and PROFILES["instant"].itl_ms == 0
    assert PROFILES["flaky"].error_rate > 0 and PROFILES["flaky"].retry_after_s == 1
    assert PROFILES["cold-start"].cold_start_ms == 2500 and PROFILES["cold-start"].cold_idle_s == 10
    assert PROFILES["quirky"].quirks == LEGACY_QUIRKS


@pytest.mark.parametrize("name,median", [("openai-like", 350), ("fast", 120), ("slow", 900)])
def test_ttft_distributions(name: str, median: float) -> None:
    p = PROFILES[name]
    rng = random.Random(0)
    draws = [p.sample_ttft_ms(rng) for _ in range(4000)]
    assert statistics.median(draws) == pytest.approx(median, rel=0.05)
    assert statistics.quantiles(draws, n=100)[98] > 1.3 * median  # a right tail, like real TTFTs
    scaled = p.replace(time_scale=0.1)
    assert statistics.median(scaled.sample_ttft_ms(rng) for _ in range(4000)) == pytest.approx(
        median / 10, rel=0.05
    )
    normal = p.replace(ttft_dist="normal", ttft_sigma=30)
    assert statistics.stdev(normal.sample_ttft_ms(rng) for _ in range(4000)) == pytest.approx(30, rel=0.1)


def test_overrides_parse_strings_and_types() -> None:
    sets = parse_set(
        [
            "ttft_ms=50",
            "itl-ms=10",
            "no_done=true",
            "models=a,b",
            "error_kinds=429:3,reset",
            "error_schedule=500@7,429@3",
            "chunk_tokens=2",
        ]
    )
    p = get_profile("fast", **sets)
    assert p.ttft_ms == 50.0 and p.itl_ms == 10.0 and p.no_done is True and p.models == ("a", "b")
    assert p.error_kinds == (("429", 3.0), ("reset", 1.0)) and p.error_schedule == ((3, "429"), (7, "500"))
    assert p.chunk_tokens == 2 and p.name == "fast" and p.ttft_dist == "lognormal"
    assert get_profile("instant", ttft_ms=5, require_key=1).require_key is True
    assert get_profile(Profile(name="custom", itl_ms=3)).itl_ms == 3
    for bad in (
        {"nope": 1},
        {"ttft_dist": "weird"},
        {"no_done": "maybe"},
        {"error_schedule": "429"},
        {"error_rate": 2},
    ):
        with pytest.raises(ValueError):
            get_profile("instant", **bad)
    with pytest.raises(ValueError):
        get_profile("nope")
    with pytest.raises(ValueError):
        parse_set(["novalue"])
