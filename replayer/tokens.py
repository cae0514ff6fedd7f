"""Token estimates (when a provider reports no usage) and per-token inter-token latency.

Estimate: ``ceil(characters / 4)``, OpenAI's rule of thumb for English text, over the whole
answer (every choice's text, refusal and tool calls: name and arguments); rows that use it
are marked ``tokens_estimated``. It is only a fallback: usage from the provider wins, unless
it says 0 completion tokens for an answer that has text or tool calls (or 0 prompt tokens),
which no real answer has: then the tokens are estimated as if the usage were missing.

Per-token ITL: a streamed event may carry several tokens, so per-chunk gaps would
overstate the time per token. Each content event ``i`` is assigned
``completion_tokens * chars_i / total_chars`` tokens (rounded on the running total so
the counts add up), and the gap between event ``i-1`` and event ``i`` is divided evenly
over event ``i``'s tokens. An event that rounds to zero tokens passes its gap on to the
next event that has tokens. The first event's tokens are part of TTFT, so the list has
about ``completion_tokens - tokens_of_first_event`` entries and its mean equals
``(t_last - t_first) / (tokens after the first event)``.
"""

from __future__ import annotations

import math


def estimate_tokens(text: str | None) -> int:
    """Approximate token count of ``text`` (~4 characters per token)."""
    return math.ceil(len(text) / 4) if text else 0


def answer_text(body: object) -> str:
    """Everything a provider bills as output tokens, as text: every choice's content, refusal and
    tool calls (name + arguments) for chat/completions, the output items of a Responses body."""
    if not isinstance(body, dict):
        return ""
    parts: list[str] = []
    choices = body.get("choices")
    for c in choices if isinstance(choices, list) else ():
        if not isinstance(c, dict):
            continue
        parts.append(_str(c.get("text")))
        m = c.get("message")
        if isinstance(m, dict):
            parts += [_content(m.get("content")), _str(m.get("refusal")), _call(m.get("function_call"))]
            calls = m.get("tool_calls")
            parts += (
                [_call(t.get("function")) for t in calls if isinstance(t, dict)]
                if isinstance(calls, list)
                else []
            )
    output = body.get("output")
    for item in output if isinstance(output, list) else ():
        if isinstance(item, dict):
            parts += [_content(item.get("content")), _call(item)]
    if not choices and not output:
        parts.append(_str(body.get("text")))
    return "".join(parts)


def _str(v: object) -> str:
    return v if isinstance(v, str) else ""


def _content(v: object) -> str:
    """A message's content: a string, or a list of parts with ``text`` or ``refusal``."""
    if isinstance(v, list):
        return "".join(_str(p.get("text")) + _str(p.get("refusal")) for p in v if isinstance(p, dict))
    return _str(v)


def _call(f: object) -> str:
    """A function call's name and arguments (chat ``function``/``function_call``, Responses item)."""
    if not isinstance(f, dict) or not isinstance(f.get("arguments"), str):
        return ""
    return _str(f.get("name")) + f["arguments"]


def per_token_itl(times_ms: list[float], chars: list[int], completion_tokens: int | None) -> list[float]:
    """Inter-token latencies in ms, one per token after the first content event (see module doc)."""
    n = len(times_ms)
    if n < 2:
        return []
    total = sum(chars)
    tokens = completion_tokens if completion_tokens and completion_tokens > 0 else n
    if total <= 0:
        chars, total = [1] * n, n
    out: list[float] = []
    cum_chars = chars[0]
    assigned = round(tokens * cum_chars / total)
    pending = 0.0
    for i in range(1, n):
        cum_chars += chars[i]
        upto = round(tokens * cum_chars / total)
        k = upto - assigned
        assigned = upto
        pending += times_ms[i] - times_ms[i - 1]
        if k > 0:
            out.extend([pending / k] * k)
            pending = 0.0
    return out


def mean(values: list[float]) -> float | None:
    """Arithmetic mean, None for an empty list."""
    return sum(values) / len(values) if values else None
