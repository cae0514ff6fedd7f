"""Deterministic non-text answers of the fake provider: embeddings, audio transcripts, images, moderation."""

from __future__ import annotations

import base64
import functools
import hashlib
import random
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .content import gen_text, stable_hash

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
