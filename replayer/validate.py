"""Does a response work with the official ``openai`` SDK? (``sdk_valid``, ``sdk_error``)

We check what the SDK itself does at run time, not strict ``model_validate`` (which fails
real OpenAI bodies, see techfacts Addendum): the body must build through the SDK's own
lenient parser, ``openai._models.construct_type``, and the fields applications read must
be present and well-typed (chat: ``choices[].message.content`` str|None, tool calls with a
function name and string arguments, a ``finish_reason``; streams: every chunk builds as a
``ChatCompletionChunk`` with a ``choices`` list, no in-stream error, valid JSON events;
Responses: an ``output`` list, ``output_text`` derivable, usage when completed;
embeddings: float vectors, base64 ones decoded as the SDK does; and so on).

Chunks of the same shape (keys, nesting and value types) get the same verdict, so chunk
verdicts are cached by shape (:func:`shape`): the SDK parser runs once per distinct chunk
shape, not once per chunk.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from openai._models import construct_type
from openai.types import Completion, CreateEmbeddingResponse, ImagesResponse, ModerationCreateResponse
from openai.types.audio import Transcription
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent

from parity.wire.sse import SSEEvent

_MISSING = object()
_cache: dict[tuple[str, object], str | None] = {}
_CACHE_MAX = 20000


def _get(obj: object, name: str) -> object:
    if isinstance(obj, dict):
        return obj.get(name, _MISSING)
    return getattr(obj, name, _MISSING)


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _opt_str(v: object) -> bool:
    return v is None or v is _MISSING or isinstance(v, str)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_tool_calls(calls: object, where: str, fragment: bool) -> str | None:
    if calls is None or calls is _MISSING:
        return None
    if not isinstance(calls, list):
        return f"{where}.tool_calls is not a list"
    for j, tc in enumerate(calls):
        fn = _get(tc, "function")
        if fragment:
            if not _is_int(_get(tc, "index")):
                return f"{where}.tool_calls[{j}].index is not an integer"
            if fn in (None, _MISSING):
                continue
            if not (_opt_str(_get(fn, "name")) and _opt_str(_get(fn, "arguments"))):
                return f"{where}.tool_calls[{j}].function name/arguments are not strings"
            continue
        if fn in (None, _MISSING):
            return f"{where}.tool_calls[{j}].function is missing"
        name = _get(fn, "name")
        if not _is_str(name) or not name:
            return f"{where}.tool_calls[{j}].function.name is not a non-empty string"
        if not _is_str(_get(fn, "arguments")):
            return f"{where}.tool_calls[{j}].function.arguments is not a string"
    return None


def _check_usage(usage: object, names: tuple[str, str]) -> str | None:
    if usage is None or usage is _MISSING:
        return None
    for n in names:
        if not _is_int(_get(usage, n)):
            return f"usage.{n} is not an integer"
    return None


def check_chat(body: dict) -> str | None:
    """A non-streamed (or reassembled) chat completion."""
    obj = construct_type(type_=ChatCompletion, value=body)
    choices = _get(obj, "choices")
    if not isinstance(choices, list):
        return "choices is not a list"
    if not choices:
        return "choices is empty"
    for i, ch in enumerate(choices):
        msg = _get(ch, "message")
        if msg in (None, _MISSING) or isinstance(msg, (str, list)):
            return f"choices[{i}].message is missing"
        if not _opt_str(_get(msg, "content")):
            return f"choices[{i}].message.content is not a string or null"
        err = _check_tool_calls(_get(msg, "tool_calls"), f"choices[{i}].message", fragment=False)
        if err:
            return err
        if not _is_str(_get(ch, "finish_reason")):
            return f"choices[{i}].finish_reason is missing"
    return _check_usage(_get(obj, "usage"), ("prompt_tokens", "completion_tokens"))


def check_chat_chunk(chunk: dict) -> str | None:
    """One ``chat.completion.chunk``."""
    obj = construct_type(type_=ChatCompletionChunk, value=chunk)
    choices = _get(obj, "choices")
    if not isinstance(choices, list):
        return "chunk choices is not a list"
    for i, ch in enumerate(choices):
        delta = _get(ch, "delta")
        if delta in (None, _MISSING) or isinstance(delta, (str, list)):
            return f"chunk choices[{i}].delta is missing"
        if not _opt_str(_get(delta, "content")):
            return f"chunk choices[{i}].delta.content is not a string or null"
        err = _check_tool_calls(_get(delta, "tool_calls"), f"chunk choices[{i}].delta", fragment=True)
        if err:
            return err
        if not _opt_str(_get(ch, "finish_reason")):
            return f"chunk choices[{i}].finish_reason is not a string"
    return _check_usage(_get(obj, "usage"), ("prompt_tokens", "completion_tokens"))


def check_completion(body: dict, final: bool = True) -> str | None:
    """A legacy completion (or one of its stream chunks when ``final`` is false)."""
    obj = construct_type(type_=Completion, value=body)
    choices = _get(obj, "choices")
    if not isinstance(choices, list):
        return "choices is not a list"
    if final and not choices:
        return "choices is empty"
    for i, ch in enumerate(choices):
        if not _is_str(_get(ch, "text")):
            return f"choices[{i}].text is not a string"
        if final and not _is_str(_get(ch, "finish_reason")):
            return f"choices[{i}].finish_reason is missing"
    return None


def check_response(body: dict) -> str | None:
    """A Responses-API ``response`` object."""
    obj = construct_type(type_=Response, value=body)
    if not isinstance(_get(obj, "output"), list):
        return "output is not a list"
    try:
        text = obj.output_text  # type: ignore[union-attr]
    except Exception as e:  # the SDK property itself failed on this body
        return f"output_text not derivable: {type(e).__name__}: {e}"
    if not isinstance(text, str):
        return "output_text is not a string"
    if _get(obj, "status") == "completed":
        usage = _get(obj, "usage")
        if usage in (None, _MISSING):
            return "usage missing on a completed response"
        return _check_usage(usage, ("input_tokens", "output_tokens"))
    return None


def check_response_event(event: dict) -> str | None:
    """One Responses-API stream event."""
    obj = construct_type(type_=ResponseStreamEvent, value=event)
    typ = _get(obj, "type")
    if not _is_str(typ):
        return "event has no type"
    if typ.endswith(".delta") and "delta" in event and not isinstance(event["delta"], (str, dict, list)):
        return f"{typ}: delta has the wrong type"
    if typ in ("response.completed", "response.failed", "response.incomplete", "response.created"):
        if not isinstance(event.get("response"), dict):
            return f"{typ}: response is missing"
    return None


def check_embeddings(body: dict) -> str | None:
    """Embeddings: float vectors, or base64 float32 that the SDK decodes."""
    obj = construct_type(type_=CreateEmbeddingResponse, value=body)
    data = _get(obj, "data")
    if not isinstance(data, list) or not data:
        return "data is not a non-empty list"
    for i, item in enumerate(data):
        emb = _get(item, "embedding")
        if isinstance(emb, str):
            try:
                raw = base64.b64decode(emb, validate=True)
            except (binascii.Error, ValueError):
                return f"data[{i}].embedding is not valid base64"
            if not raw or len(raw) % 4:
                return f"data[{i}].embedding base64 is not float32 data"
        elif not (
            isinstance(emb, list)
            and emb
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in emb)
        ):
            return f"data[{i}].embedding is not a list of floats"
    return _check_usage(_get(obj, "usage"), ("prompt_tokens",))


def check_images(body: dict) -> str | None:
    """An images response: every item has ``b64_json`` or ``url``."""
    obj = construct_type(type_=ImagesResponse, value=body)
    data = _get(obj, "data")
    if not isinstance(data, list) or not data:
        return "data is not a non-empty list"
    for i, item in enumerate(data):
        if not (_is_str(_get(item, "b64_json")) or _is_str(_get(item, "url"))):
            return f"data[{i}] has neither b64_json nor url"
    return None


def check_transcription(body: dict) -> str | None:
    """A JSON transcription/translation: ``text`` is a string."""
    obj = construct_type(type_=Transcription, value=body)
    return None if _is_str(_get(obj, "text")) else "text is not a string"


def check_moderations(body: dict) -> str | None:
    """A moderation response: results with a boolean ``flagged``."""
    obj = construct_type(type_=ModerationCreateResponse, value=body)
    results = _get(obj, "results")
    if not isinstance(results, list) or not results:
        return "results is not a non-empty list"
    for i, r in enumerate(results):
        if not isinstance(_get(r, "flagged"), bool):
            return f"results[{i}].flagged is not a boolean"
    return None


BODY_CHECKS: dict[str, Callable[[dict], str | None]] = {
    "chat.completions": check_chat,
    "responses": check_response,
    "completions": check_completion,
    "embeddings": check_embeddings,
    "images.generations": check_images,
    "audio.transcriptions": check_transcription,
    "audio.translations": check_transcription,
    "moderations": check_moderations,
}
CHUNK_CHECKS: dict[str, Callable[[dict], str | None]] = {
    "chat.completions": check_chat_chunk,
    "completions": lambda c: check_completion(c, final=False),
    "responses": check_response_event,
}


def shape(v: object) -> object:
    """Keys, nesting and value types of a JSON value (``type``/``object`` values kept: they select SDK models).

    Two chunks of the same shape get the same verdict from the chunk checks, which look at types only.
    """
    if isinstance(v, dict):
        return tuple(
            (k, x if k in ("type", "object") and isinstance(x, str) else shape(x)) for k, x in v.items()
        )
    if isinstance(v, list):
        return ("[]", frozenset(shape(x) for x in v))
    return type(v).__name__


def _cached(endpoint: str, chunk: dict) -> str | None:
    key = (endpoint, shape(chunk))
    try:
        return _cache[key]
    except KeyError:
        pass
    try:
        verdict = CHUNK_CHECKS[endpoint](chunk)
    except Exception as e:  # the SDK parser itself raised
        verdict = f"SDK parser raised {type(e).__name__}: {e}"
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = verdict
    return verdict


def check_body(
    endpoint: str, body: object, raw_text: str | None = None, request: dict | None = None
) -> str | None:
    """The first problem with a non-streamed 2xx body, or None when the SDK is fine with it."""
    if endpoint.startswith("audio.") and body is None:
        fmt = (request or {}).get("response_format") or "json"
        if fmt in ("text", "srt", "vtt") and isinstance(raw_text, str):
            return None
        return "body is not JSON"
    if not isinstance(body, dict):
        return "body is not a JSON object"
    check = BODY_CHECKS.get(endpoint)
    if check is None:
        return None
    try:
        return check(body)
    except Exception as e:  # the SDK parser itself raised
        return f"SDK parser raised {type(e).__name__}: {e}"


def check_stream(
    endpoint: str, events: list[SSEEvent], parsed: list[dict | None], final_body: dict | None
) -> str | None:
    """The first problem with a streamed response, or None (``parsed[i]`` is ``events[i]`` as JSON)."""
    saw_data = False
    for i, (ev, obj) in enumerate(zip(events, parsed, strict=True)):
        if ev.data.startswith("[DONE]"):
            break
        saw_data = True
        if obj is None:
            return f"event {i}: data is not a JSON object"
        if obj.get("error"):
            err = obj["error"]
            msg = err.get("message") if isinstance(err, dict) else None
            return f"in-stream error: {msg or 'An error occurred during streaming'}"
        if endpoint in CHUNK_CHECKS:
            verdict = _cached(endpoint, obj)
            if verdict:
                return f"event {i}: {verdict}"
    if not saw_data:
        return "stream has no events"
    if final_body is not None and endpoint in BODY_CHECKS:
        return check_body(endpoint, final_body)
    return None
