"""Endpoint handlers of the fake provider (a mixin of FakeProvider): parse, generate, render."""

from __future__ import annotations

import base64
import math
import re
import time
from typing import Any

from aiohttp import web

from . import content as C
from . import media as M
from . import wire as W
from .base import ApiError, Ctx, check_forced, function_tools, int_param, stop_list
from .plans import ChoicePlan, GenRequest, plan_choices
from .profiles import Profile

DEFAULT_MODELS = (
    "gpt-4o-mini gpt-4o gpt-4.1 gpt-4.1-mini gpt-4.1-nano gpt-5 gpt-5-mini o4-mini gpt-3.5-turbo-instruct "
    "davinci-002 text-embedding-3-small text-embedding-3-large text-embedding-ada-002 whisper-1 "
    "gpt-4o-transcribe dall-e-2 dall-e-3 gpt-image-1 omni-moderation-latest text-moderation-latest"
).split()
_AUDIO_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


class Endpoints:
    """OpenAI endpoints; the pipeline (_begin/_send_json/_stream) comes from FakeProvider."""

    profile: Profile

    async def _begin(
        self, request: web.Request, required: tuple[str, ...] = (), multipart: bool = False
    ) -> Ctx:
        raise NotImplementedError

    async def _send_json(
        self, request: web.Request, ctx: Ctx, obj: Any, steps: int = 1
    ) -> web.StreamResponse:
        raise NotImplementedError

    async def _stream(
        self, request: web.Request, ctx: Ctx, steps: list[bytes], preamble: bytes = b""
    ) -> web.StreamResponse:
        raise NotImplementedError

    def unknown_model(self, model: Any) -> ApiError:
        raise NotImplementedError

    # --- text generation endpoints ----------------------------------------------------------------
    def _gen_request(self, ctx: Ctx, *, n: int, max_tokens: int | None, stop: list[str]) -> GenRequest:
        p = self.profile
        if p.ignore_params:  # a provider that silently drops these
            n, max_tokens, stop = 1, None, []
        return GenRequest(
            seed=C.request_seed(ctx.body, p.seed),
            n=n,
            max_tokens=max_tokens,
            stop=stop,
            exact_tokens=ctx.tokens,
            bad_tool_args=p.bad_tool_args,
        )

    def _head(self, ctx: Ctx, prefix: str, n: int = 29) -> dict[str, Any]:
        rid = prefix + C.short_id(C.stable_hash(self.profile.seed, ctx.seq, prefix), n)
        return {"id": rid, "created": int(time.time()), "model": ctx.model}

    def _plan(self, req: GenRequest) -> list[ChoicePlan]:
        return plan_choices(req, self.profile.answer_min_tokens, self.profile.answer_max_tokens)

    @staticmethod
    def _fingerprint(model: str) -> str:
        return "fp_" + format(C.stable_hash("fp", model) & 0xFFFFFFFFFF, "010x")

    @staticmethod
    def _json_format(fmt: Any) -> dict[str, Any] | None:
        """Schema to generate for response_format / text.format (None for plain text)."""
        if not isinstance(fmt, dict):
            return None
        if fmt.get("type") == "json_object":
            return C.DEFAULT_OBJECT_SCHEMA
        if fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema", fmt)  # chat nests it; Responses' text.format is flat
            schema = spec.get("schema") if isinstance(spec, dict) else None
            return schema if isinstance(schema, dict) else {"type": "object"}
        return None

    def _counts(self, prompt: int, completion: int) -> tuple[int, int]:
        """Token counts as usage reports them (0 and 0 under the zero_usage quirk)."""
        return (0, 0) if self.profile.zero_usage else (prompt, completion)

    def _steps_of(self, ctx: Ctx, plans: list[ChoicePlan]) -> int:
        return max(len(W.plan_chunks(pl, ctx.chunk_tokens)) for pl in plans)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions (stream or not; tools, response_format, n, stop, max tokens)."""
        ctx = await self._begin(request, ("model", "messages"))
        b = ctx.body
        msgs = b["messages"]
        if not isinstance(msgs, list):
            raise ApiError(
                400, "Invalid type for 'messages': expected an array.", param="messages", code="invalid_type"
            )
        if not msgs:
            raise ApiError(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                param="messages",
                code="empty_array",
            )
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in msgs):
            raise ApiError(400, "Invalid 'messages': every message needs a string 'role'.", param="messages")
        max_tokens = int_param(b, "max_completion_tokens", None, 1) or int_param(b, "max_tokens", None, 1)
        n = int_param(b, "n", 1, 1, 128) or 1
        req = self._gen_request(ctx, n=n, max_tokens=max_tokens, stop=stop_list(b.get("stop")))
        req.tools = function_tools(b.get("tools"), nested=True)
        req.tool_choice = b.get("tool_choice", "auto")
        check_forced(req.tool_choice, req.tools)
        req.parallel_tool_calls = b.get("parallel_tool_calls") is not False
        req.after_tool_result = msgs[-1].get("role") in ("tool", "function")
        req.json_schema = self._json_format(b.get("response_format"))
        plans = self._plan(req)
        opts = b.get("stream_options") if isinstance(b.get("stream_options"), dict) else {}
        include_usage = bool(opts.get("include_usage")) and not self.profile.no_stream_usage
        completion = sum(pl.completion_tokens for pl in plans)
        # A stream without include_usage never reports usage: skip counting the (long) prompt.
        prompt = C.prompt_tokens(msgs, b.get("tools")) if include_usage or not b.get("stream") else 0
        usage = W.chat_usage(*self._counts(prompt, completion))
        head = self._head(ctx, "chatcmpl-")
        fp = self._fingerprint(ctx.model)
        if b.get("stream"):
            obfuscate = opts.get("include_obfuscation") is not False
            steps = W.chat_stream(
                head, plans, usage, include_usage, fp, ctx.chunk_tokens, self.profile, obfuscate
            )
            return await self._stream(request, ctx, steps)
        obj = W.chat_completion(head, plans, usage, fp, self.profile)
        return await self._send_json(request, ctx, obj, self._steps_of(ctx, plans))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions, the legacy text completions API."""
        ctx = await self._begin(request, ("model", "prompt"))
        b = ctx.body
        prompt = b["prompt"]
        if isinstance(prompt, str) or (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt:
            prompts = prompt
        else:
            raise ApiError(
                400, "Invalid 'prompt': expected a string or an array.", param="prompt", code="invalid_type"
            )
        texts = [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompts]
        n = int_param(b, "n", 1, 1, 128) or 1
        # Legacy completions default to max_tokens=16, as on OpenAI.
        req = self._gen_request(
            ctx, n=n, max_tokens=int_param(b, "max_tokens", 16, 0), stop=stop_list(b.get("stop"))
        )
        plans: list[ChoicePlan] = []
        for i in range(len(texts)):
            req.seed = C.stable_hash(C.request_seed(b, self.profile.seed), i)
            plans += self._plan(req)
        prefixes = [texts[i // req.n] if b.get("echo") else "" for i in range(len(plans))]
        ptoks = sum(
            C.count_tokens(t) if isinstance(p, str) else len(p) for t, p in zip(texts, prompts, strict=True)
        )
        usage = W.chat_usage(*self._counts(ptoks, sum(pl.completion_tokens for pl in plans)))
        usage = {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
        head = self._head(ctx, "cmpl-")
        if b.get("stream"):
            opts = b.get("stream_options") if isinstance(b.get("stream_options"), dict) else {}
            include_usage = bool(opts.get("include_usage")) and not self.profile.no_stream_usage
            steps = W.completion_stream(
                head, plans, usage, include_usage, prefixes, ctx.chunk_tokens, self.profile
            )
            return await self._stream(request, ctx, steps)
        obj = W.completion(head, plans, usage, prefixes, self.profile)
        return await self._send_json(request, ctx, obj, self._steps_of(ctx, plans))

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/responses: typed SSE events when streamed, function tools, text.format."""
        ctx = await self._begin(request, ("model", "input"))
        b = ctx.body
        inp = b["input"]
        if not isinstance(inp, str | list):
            raise ApiError(
                400,
                "Invalid type for 'input': expected a string or an array.",
                param="input",
                code="invalid_type",
            )
        req = self._gen_request(ctx, n=1, max_tokens=int_param(b, "max_output_tokens", None, 16), stop=[])
        req.tools = function_tools(b.get("tools"), nested=False)
        req.tool_choice = b.get("tool_choice", "auto")
        check_forced(req.tool_choice, req.tools)
        req.parallel_tool_calls = b.get("parallel_tool_calls") is not False
        last = inp[-1] if isinstance(inp, list) and inp else {}
        req.after_tool_result = isinstance(last, dict) and last.get("type") == "function_call_output"
        text_opts = b.get("text") if isinstance(b.get("text"), dict) else {}
        req.json_schema = self._json_format(text_opts.get("format"))
        plan = self._plan(req)[0]
        usage = W.responses_usage(
            *self._counts(
                C.prompt_tokens([b.get("instructions"), inp], b.get("tools")), plan.completion_tokens
            )
        )
        head = self._head(ctx, "resp_", 48)
        msg_id = "msg_" + C.short_id(C.stable_hash(self.profile.seed, ctx.seq, "msg"), 48, "0123456789abcdef")
        status = "incomplete" if plan.finish_reason == "length" else "completed"
        done_at = head["created"] + max(1, round(ctx.ttft + ctx.itl * plan.completion_tokens))
        items = W.response_items(plan, msg_id)
        final = W.response_object(head, b, b.get("tools"), status, items, usage, done_at)
        if b.get("stream"):
            base = W.response_object(head, b, b.get("tools"), "in_progress", [], None)
            opts = b.get("stream_options") if isinstance(b.get("stream_options"), dict) else {}
            obfuscate = opts.get("include_obfuscation") is not False
            preamble, steps = W.responses_stream(
                base,
                plan,
                final,
                msg_id,
                ctx.chunk_tokens,
                obfuscate,
                not self.profile.responses_no_event_lines,
            )
            return await self._stream(request, ctx, steps, preamble)
        return await self._send_json(request, ctx, final, self._steps_of(ctx, [plan]))

    # --- other endpoints --------------------------------------------------------------------------
    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/embeddings: float or base64, optional dimensions."""
        ctx = await self._begin(request, ("model", "input"))
        b = ctx.body
        inp = b["input"]
        if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
            inp = [inp]
        if not isinstance(inp, list) or not inp:
            raise ApiError(400, "Invalid 'input': expected a non-empty string or array.", param="input")
        texts: list[str] = []
        tokens = 0
        for item in inp:
            if isinstance(item, str) and item:
                texts.append(item)
                tokens += C.count_tokens(item)
            elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
                texts.append(" ".join(map(str, item)))
                tokens += len(item)
            else:
                raise ApiError(
                    400, "Invalid 'input': items must be non-empty strings or token arrays.", param="input"
                )
        enc = b.get("encoding_format") or "float"
        if enc not in ("float", "base64"):
            raise ApiError(
                400,
                f"Invalid value for 'encoding_format': {enc!r}.",
                param="encoding_format",
                code="invalid_value",
            )
        native = M.model_dims(ctx.model)
        dims = int_param(b, "dimensions", None, 1, native)
        data = []
        for i, text in enumerate(texts):
            vec = M.embed(text, ctx.model, dims)
            data.append(
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": M.embedding_b64(vec) if enc == "base64" else vec.tolist(),
                }
            )
        obj = {
            "object": "list",
            "data": data,
            "model": ctx.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return await self._send_json(request, ctx, obj)

    async def _audio(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/audio/transcriptions and /translations (multipart upload)."""
        ctx = await self._begin(request, ("file", "model"), multipart=True)
        b = ctx.body
        upload = b["file"]
        if not isinstance(upload, dict):
            raise ApiError(400, "Invalid 'file': expected an uploaded file.", param="file")
        fmt = b.get("response_format") or "json"
        if fmt not in _AUDIO_FORMATS:
            raise ApiError(
                400,
                f"Invalid value for 'response_format': {fmt!r}.",
                param="response_format",
                code="invalid_value",
            )
        tr = M.transcribe(upload["data"], self.profile.seed)
        translate = request.path.endswith("/translations")
        usage = {"type": "duration", "seconds": math.ceil(tr.duration)}
        obj: Any
        if fmt == "json":
            obj = {"text": tr.text, "usage": usage}
        elif fmt == "text":
            obj = tr.text + "\n"
        elif fmt in ("srt", "vtt"):
            obj = M.subtitles(tr, fmt)
        else:
            obj = {
                "task": "translate" if translate else "transcribe",
                "language": "english" if translate else (b.get("language") or "english"),
                "duration": tr.duration,
                "text": tr.text,
                "segments": tr.segments,
                "usage": usage,
            }
            if "word" in (b.get("timestamp_granularities") or []):
                obj["words"] = tr.words
        return await self._send_json(request, ctx, obj)

    async def _images(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/images/generations: b64_json PNGs or URLs served by this fake."""
        ctx = await self._begin(request, ("prompt",))
        b = ctx.body
        model = b.get("model") or "dall-e-2"
        if not isinstance(model, str) or not self.profile.accepts_model(model):
            raise self.unknown_model(model)
        n = int_param(b, "n", 1, 1, 10) or 1
        fmt = b.get("response_format") or ("b64_json" if model.startswith("gpt-image") else "url")
        if fmt not in ("url", "b64_json"):
            raise ApiError(
                400,
                f"Invalid value for 'response_format': {fmt!r}.",
                param="response_format",
                code="invalid_value",
            )
        w, h = M.image_size(b.get("size"))
        seed = C.request_seed(b, self.profile.seed)
        data = []
        for i in range(n):
            rgb = M.colour_for(C.stable_hash(seed, i))
            if fmt == "b64_json":
                item = {"b64_json": base64.b64encode(M.make_png(w, h, rgb)).decode()}
            else:
                # Served by this fake (GET /v1/fake-images/...), at the address the client used.
                item = {
                    "url": f"{request.scheme}://{request.host}/v1/fake-images/{w}x{h}-{bytes(rgb).hex()}.png"
                }
            if model == "dall-e-3":
                item["revised_prompt"] = b["prompt"]
            data.append(item)
        return await self._send_json(request, ctx, {"created": int(time.time()), "data": data})

    async def _image_file(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/fake-images/WxH-rrggbb.png: the image behind a generated URL."""
        m = re.fullmatch(r"(\d{1,4})x(\d{1,4})-([0-9a-f]{6})\.png", request.match_info["name"])
        if not m:
            raise ApiError(404, f"Invalid URL (GET {request.path})")
        w, h = M.image_size(f"{m.group(1)}x{m.group(2)}")
        rgb = tuple(bytes.fromhex(m.group(3)))
        return web.Response(body=M.make_png(w, h, (rgb[0], rgb[1], rgb[2])), content_type="image/png")

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/moderations."""
        ctx = await self._begin(request, ("input",))
        b = ctx.body
        model = b.get("model") or "omni-moderation-latest"
        inp = b["input"]
        items = [inp] if isinstance(inp, str) else inp if isinstance(inp, list) else None
        if not items:
            raise ApiError(400, "Invalid 'input': expected a string or a non-empty array.", param="input")
        texts = [
            i if isinstance(i, str) else str(i.get("text", "")) if isinstance(i, dict) else str(i)
            for i in items
        ]
        obj = {
            "id": self._head(ctx, "modr-")["id"],
            "model": model,
            "results": [M.moderate(t) for t in texts],
        }
        return await self._send_json(request, ctx, obj)

    def _model_obj(self, model: str) -> dict[str, Any]:
        owner = "system" if model.startswith(("text-", "whisper", "dall-e", "omni", "davinci")) else "openai"
        return {
            "id": model,
            "object": "model",
            "created": 1700000000 + C.stable_hash(model) % 30000000,
            "owned_by": owner,
        }

    async def _models(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models: the profile's models (a default list when it accepts "*")."""
        ctx = await self._begin(request)
        names = [m for m in self.profile.models if not any(c in m for c in "*?[")]
        names = names or [m for m in DEFAULT_MODELS if self.profile.accepts_model(m)]
        return await self._send_json(
            request, ctx, {"object": "list", "data": [self._model_obj(m) for m in names]}
        )

    async def _model(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/models/{id}."""
        ctx = await self._begin(request)
        model = request.match_info["model"]
        if not self.profile.accepts_model(model):
            raise ApiError(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        return await self._send_json(request, ctx, self._model_obj(model))
