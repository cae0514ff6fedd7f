"""A synthetic store whose ground truth we chose, shared by the report, check and notebook tests.

Four arms answer the same 160 chat requests: ``recorded`` (the baseline), ``fastco`` (half the
latency), ``slowco`` (1.6x the latency, 3 s cold starts after idle gaps, an unlisted model),
``flatco`` (same latency, flat per-request price, no usage on streams, 12 server errors, and one
answer that is a script-injection attempt). Built with ``tests/evals/evalhelpers.py``.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evals"))

from evalhelpers import T0, chat_body, chat_request, make_exchange, make_result, run_config, write_run  # noqa: E402

RUN = "r1"
N = 160
INJECTION = "<script>alert(1)</script><img src=x onerror=alert(1)>"
INJECTED_EXCHANGE = "e7"
INJECTED_EXCHANGE_INDEX = 7
FLAT_ERRORS = set(range(20, 32))
GAP_EVERY = 20  # an idle gap of 2 minutes before every 20th exchange
WORDS = (
    "the deployment rolled back after the health check failed while latency grew and costs rose "
    "our team reviewed logs found a retry storm and fixed the index so queries run faster today"
).split()
DONE_SSE = 'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: [DONE]\n\n'
PROVIDERS = {
    "fastco": {"pricing": {"default": {"input_per_1m": 0.6, "output_per_1m": 0.6}}, "model": "fast-70b"},
    "slowco": {"pricing": {"default": {"input_per_1m": 0.9, "output_per_1m": 0.9}}, "model": "slow-70b"},
    "flatco": {"pricing": {"default": {"per_request": 0.0004}}, "model": "flat-70b"},
}
SCALE = {"recorded": 1.0, "fastco": 0.5, "slowco": 1.6, "flatco": 1.0}


def _text(rng: np.random.Generator, n: int) -> str:
    return " ".join(rng.choice(WORDS, n)).capitalize() + "."


def _config() -> dict:
    providers = {
        name: {
            "base_url": f"https://user:secret@{name}.example/v1?key=sk-should-not-show",
            "api_key_env": f"{name.upper()}_API_KEY",
            "models": {"*": p["model"]},
            "pricing": p["pricing"],
            "models_listed": [p["model"]] if name != "slowco" else ["other-model"],
            "limits": {"concurrency": 8},
        }
        for name, p in PROVIDERS.items()
    }
    cfg = run_config(providers, {"default": {"input_per_1m": 2.5, "output_per_1m": 10.0}}, run_id=RUN)
    cfg |= {
        "selection": {"status": "ok", "exchanges": N},
        "pacing": {"mode": "as-recorded"},
        "seed": 0,
        "versions": {"parity": "0.1.0", "python": "3.11"},
    }
    return cfg


def build_store(db: Path) -> Path:
    """Write the synthetic run ``r1`` into the store at ``db``."""
    rng = np.random.default_rng(7)
    base = rng.lognormal(np.log(300), 0.35, N)
    tokens = rng.integers(30, 200, N)
    prompts = np.clip(rng.lognormal(np.log(400), 1.0, N), 12, 9000).astype(int)
    rows, exchanges = [], []
    t = T0
    starts = []
    for i in range(N):
        t += timedelta(seconds=120 if i % GAP_EVERY == 0 and i else 3)
        starts.append(t)
    for i in range(N):
        answer = _text(rng, 40)
        prompt = f"Summarise incident {i}: " + _text(rng, 12)
        if i == INJECTED_EXCHANGE_INDEX:
            prompt += " " + INJECTION
        exchanges.append(
            make_exchange(
                id=f"e{i}",
                recorded_at=T0 + timedelta(seconds=30 * i),
                prompt_tokens=int(prompts[i]),
                completion_tokens=int(tokens[i]),
                request_body=chat_request(
                    messages=[{"role": "user", "content": prompt}],
                    stream=True,
                    stream_options={"include_usage": True},
                ),
            )
        )
        for arm in ("recorded", "fastco", "slowco", "flatco"):
            rows.append(_cell(rng, arm, i, answer, base[i], int(tokens[i]), int(prompts[i]), starts[i]))
    write_run(db, rows, _config(), exchanges=exchanges, run_id=RUN)
    return db


def _cell(rng, arm: str, i: int, answer: str, base: float, tokens: int, prompt_tokens: int, start) -> dict:
    noise = rng.lognormal(0, 0.15)
    ttft = base * SCALE[arm] * noise
    cold = arm == "slowco" and (i % GAP_EVERY == 0)
    if cold:
        ttft += 3000.0
    itl = 4.0 * SCALE[arm] * rng.lognormal(0, 0.1)
    e2e = ttft + itl * (tokens - 1)
    text = answer
    if arm != "recorded":
        words = answer.split()
        j = int(rng.integers(0, len(words)))
        words[j] = "indeed"
        text = " ".join(words)
        if i in (3, 11, 40) and arm != "flatco":
            text = "Completely different: " + _text(rng, 15)
    if arm == "flatco" and i == INJECTED_EXCHANGE_INDEX:
        text = INJECTION
    model = PROVIDERS[arm]["model"] if arm in PROVIDERS else "m"
    cell = {
        "run_id": RUN,
        "exchange_id": f"e{i}",
        "provider": arm,
        "model": model,
        "stream": True,
        "started_at": start,
        "ttft_ms": float(ttft),
        "latency_ms": float(e2e),
        "prompt_tokens": prompt_tokens,
        "completion_tokens": tokens,
        "itl_ms": [float(itl)] * (tokens - 1),
        "itl_mean_ms": float(itl),
        "stream_complete": True,
        "response_raw": DONE_SSE,
        "sent_body": chat_request(stream=True, stream_options={"include_usage": True}),
        "response_body": chat_body(text, usage=(prompt_tokens, tokens)),
    }
    if arm == "flatco":
        cell |= {"tokens_estimated": True, "response_body": chat_body(text, usage=None)}
        if i in FLAT_ERRORS:
            err = {"error": {"message": "upstream overloaded", "type": "server_error", "code": None}}
            cell |= {
                "status": 500,
                "error_type": "http_error",
                "error_message": "upstream overloaded",
                "response_body": err,
                "ttft_ms": None,
                "itl_ms": None,
                "itl_mean_ms": None,
                "finish_reason": None,
                "stream_complete": None,
                "response_raw": None,
                "completion_tokens": None,
                "prompt_tokens": None,
            }
    return make_result(**cell)
