"""
Chat web server: the chat page, nanochat's streaming API and an OpenAI-compatible API, over a pool of model workers.

    python -m scripts.chat_web                          # best checkpoint (rl > sft > mid > base), http://127.0.0.1:8000
    python -m scripts.chat_web --port 8000 --num-workers 2 --source sft --quantize int8 --no-compile

Endpoints:
    GET  /                      the chat page (nanochat/ui.html; no external assets)
    POST /chat/completions      {"messages": [...], "temperature", "top_k", "max_tokens", "seed"} ->
                                server-sent events: data: {"token": "text"} ... then data: {"done": true, ...}
    POST /v1/chat/completions   the OpenAI chat API, streaming ("stream": true) and not
    GET  /v1/models             the OpenAI model list (one model)
    GET  /health, GET /stats    liveness; workers, busy, queued, requests and tokens served

Every limit below is enforced with a 4xx JSON error {"error": {"message", "type", "param"}} that names the problem.
Requests beyond the workers wait in a bounded queue; when it is full (or the wait is too long) the answer is
503 with Retry-After; a client address with PER_CLIENT replies already under way gets 429 (behind a reverse proxy,
--trust-proxy takes that address from X-Forwarded-For). A client that disconnects stops its generation and frees its
worker. Beyond MAX_CONNECTIONS open connections uvicorn itself answers a plain-text 503. The page is served with a
strict Content-Security-Policy.
"""

import asyncio
import base64
import hashlib
import json
import os
import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from nanochat import cli
from nanochat.engine import Engine

# -----------------------------------------------------------------------------
# Limits (each one returns a documented 4xx)

MAX_BODY_BYTES = 256 * 1024        # 413 beyond this
MAX_MESSAGES = 256                 # 400: messages per request
MAX_MESSAGE_CHARS = 8_000          # 400: characters in one message
MAX_TOTAL_CHARS = 32_000           # 400: characters in all messages together
MAX_TEMPERATURE = 2.0              # 400: temperature outside [0, 2]
MAX_TOP_K = 200                    # 400: top_k outside [1, 200]
MAX_MAX_TOKENS = 2048              # 400: max_tokens outside [1, 2048] (the context may cap it lower)
DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_K = 50
QUEUE_SIZE = 16                    # requests allowed to wait for a worker; more -> 503
PER_CLIENT = 4                     # 429: replies one client address may have generating or waiting at once
QUEUE_TIMEOUT_S = 30.0             # longest wait for a worker before 503
RETRY_AFTER_S = 5                  # the Retry-After header of a 503
MAX_CONNECTIONS = 256              # open connections (slow senders included); uvicorn answers plain 503 beyond

UI_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "nanochat", "ui.html")


def page_headers(html: str) -> dict:
    """Security headers for the chat page. The Content-Security-Policy allows exactly the page's own inline script
    and style (by hash) and requests to this server: even if text ever reached the page as HTML, no injected script
    or external resource could run or load. The page may not be framed (clickjacking)."""
    def hashes(tag):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)
    csp = (f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; connect-src 'self'; "
           "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer"}


# -----------------------------------------------------------------------------
# Request models

class TextPart(BaseModel):
    """OpenAI-style content part; only text parts are supported."""
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")   # OpenAI clients may send e.g. "name"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


def check_conversation(messages: list[Message]) -> list[dict]:
    """Lengths and roles: optional system first, then user/assistant turns alternating, ending with a user turn."""
    out = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]
    total = 0
    for i, m in enumerate(out):
        if len(m["content"]) > MAX_MESSAGE_CHARS:
            raise ValueError(f"messages[{i}] has {len(m['content'])} characters; the limit is {MAX_MESSAGE_CHARS}")
        total += len(m["content"])
    if total > MAX_TOTAL_CHARS:
        raise ValueError(f"the messages have {total} characters in total; the limit is {MAX_TOTAL_CHARS}")
    turns = out[1:] if out and out[0]["role"] == "system" else out
    for i, m in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise ValueError(f"message roles must be: an optional system message, then user and assistant "
                             f"alternating, starting with user; found {m['role']!r} where {expected!r} belongs")
    if not turns or turns[-1]["role"] != "user":
        raise ValueError("the last message must be from the user")
    return out


class ChatRequest(BaseModel):
    """POST /chat/completions (nanochat's own API). Numbers and flags are strict: "temperature": true or
    "max_tokens": "5" are wrong types (400), not silently 1.0 and 5."""
    model_config = ConfigDict(extra="forbid")
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float = Field(DEFAULT_TEMPERATURE, ge=0.0, le=MAX_TEMPERATURE, strict=True)
    top_k: int | None = Field(DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, strict=True)
    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1, le=MAX_MAX_TOKENS, strict=True)
    seed: int | None = Field(None, ge=0, le=2**63 - 1, strict=True)
    _conversation: list = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        self._conversation = check_conversation(self.messages)
        return self


class StreamOptions(BaseModel):
    include_usage: bool = Field(False, strict=True)


class OpenAIChatRequest(BaseModel):
    """POST /v1/chat/completions. Unknown fields are ignored, as OpenAI-compatible servers do."""
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE, strict=True)
    top_p: float | None = Field(None, gt=0.0, le=1.0, strict=True)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K, strict=True)
    max_tokens: int | None = Field(None, ge=1, le=MAX_MAX_TOKENS, strict=True)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_MAX_TOKENS, strict=True)
    n: int | None = Field(None, ge=1, le=1, description="only one choice per request is supported", strict=True)
    stream: bool | None = Field(False, strict=True)
    stream_options: StreamOptions | None = None
    seed: int | None = Field(None, ge=0, le=2**63 - 1, strict=True)
    stop: None | str | list[str] = Field(None, description="not supported: must be absent, null or empty")
    _conversation: list = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        if self.stop:
            raise ValueError("stop sequences are not supported by this server")
        self._conversation = check_conversation(self.messages)
        return self


# -----------------------------------------------------------------------------
# Errors: one JSON shape everywhere, OpenAI's

def error_response(status: int, message: str, param: str | None = None, headers: dict | None = None):
    kind = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large",
            503: "server_overloaded"}.get(status, "invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(body, status_code=status, headers=headers)


async def on_validation_error(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        return error_response(400, f"the request body is not valid JSON ({first.get('ctx', {}).get('error', '?')})")
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid request").removeprefix("Value error, ")
    message = f"{param}: {msg}" if param else msg
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return error_response(400, message, param)


async def on_http_error(request: Request, exc: StarletteHTTPException):
    message = str(exc.detail)
    if message == "There was an error parsing the body":   # FastAPI's words when json.loads raised (not a syntax error)
        message = "the request body is not valid JSON (invalid UTF-8, nesting too deep or a number too long)"
    return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over max_bytes with 413, whether declared or chunked.
    The body (small by then) is buffered here and replayed to the app."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error_response(413, f"request body over {self.max_bytes} bytes")
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()   # after the body: wait for the client to disconnect

        return await self.app(scope, replay, send)


class ClosingStreamingResponse(StreamingResponse):
    """Closes its generator as soon as the response ends for any reason (a client disconnect included), so the
    generation behind it stops at once instead of whenever the generator is garbage-collected."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


# -----------------------------------------------------------------------------
# Worker pool

class Busy(Exception):
    pass


class TooManyFromClient(Exception):
    pass


class WorkerPool:
    """num_workers generation slots, each run on its own thread; at most queue_size requests wait for a slot.

    All workers share one Engine: its weights are read-only and every request gets its own KV cache.
    """

    def __init__(self, engine: Engine, num_workers: int, queue_size: int, queue_timeout: float,
                 per_client: int = PER_CLIENT):
        self.engine = engine
        self.num_workers, self.queue_size, self.queue_timeout = num_workers, queue_size, queue_timeout
        self.per_client = per_client
        self.in_flight: dict[str, int] = {}   # client address -> replies generating or waiting (event loop only)
        self.executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="chat-worker")
        self.free = None            # asyncio.Queue of worker ids, created on the server's event loop
        self.waiting = 0
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "completed": 0, "cancelled": 0, "rejected_busy": 0, "rejected_client": 0,
                      "tokens_served": 0}
        self.started = time.time()

    def _ensure_queue(self):
        if self.free is None:
            self.free = asyncio.Queue()
            for i in range(self.num_workers):
                self.free.put_nowait(i)

    async def acquire(self, client: str) -> int:
        """A free worker for one reply of `client` (its address): TooManyFromClient if that client already has
        per_client replies under way, so one user cannot take every worker and queue place of a shared server."""
        self._ensure_queue()
        if self.in_flight.get(client, 0) >= self.per_client:
            self.stats["rejected_client"] += 1
            raise TooManyFromClient(f"{self.per_client} replies for your address are already generating or waiting")
        if self.free.empty() and self.waiting >= self.queue_size:
            self.stats["rejected_busy"] += 1
            raise Busy(f"all {self.num_workers} workers are busy and {self.waiting} requests are waiting")
        self.in_flight[client] = self.in_flight.get(client, 0) + 1
        self.waiting += 1
        try:
            return await asyncio.wait_for(self.free.get(), self.queue_timeout)
        except BaseException as e:   # timed out or cancelled while waiting: the reply never starts
            self._forget(client)
            if isinstance(e, asyncio.TimeoutError):
                self.stats["rejected_busy"] += 1
                raise Busy(f"no worker became free within {self.queue_timeout:.0f} s") from None
            raise
        finally:
            self.waiting -= 1

    def _forget(self, client: str):
        self.in_flight[client] -= 1
        if not self.in_flight[client]:
            del self.in_flight[client]

    def release(self, worker: int, client: str):
        self._forget(client)
        self.free.put_nowait(worker)

    def snapshot(self) -> dict:
        self._ensure_queue()
        busy = self.num_workers - self.free.qsize()
        return {"workers": self.num_workers, "busy": busy, "idle": self.num_workers - busy, "queued": self.waiting,
                "queue_size": self.queue_size, "uptime_s": round(time.time() - self.started, 1), **self.stats}

    def run(self, worker: int, client: str, prompt: list[int], params: dict):
        """Start a reply on a worker thread now; return an async iterator over ("text", piece) events, then one
        ("end", reply) or ("error", message).

        Leaving the iteration early (client gone) sets a stop flag that the thread checks after every token. The
        worker is released when the thread has really finished, whatever the consumer does.
        """
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        self.stats["requests"] += 1

        def put(event):
            try:
                loop.call_soon_threadsafe(events.put_nowait, event)
            except RuntimeError:   # the event loop is gone (server shutting down)
                pass

        def produce():
            reply, event = None, None
            try:
                reply = self.engine.stream(prompt, **params)
                for piece in reply:
                    if stop.is_set():
                        break
                    put(("text", piece))
                reply.close()
                event = ("end", reply)
            except Exception as e:  # noqa: BLE001 - reported to the client, never kills the worker
                event = ("error", f"generation failed: {type(e).__name__}: {e}")
            with self.lock:   # stats first, so a client that has its answer sees them updated
                self.stats["tokens_served"] += reply.completion_tokens if reply is not None else 0
                self.stats["cancelled" if stop.is_set() else "completed"] += 1
            put(event)

        future = loop.run_in_executor(self.executor, produce)
        future.add_done_callback(lambda _: self.release(worker, client))

        async def iterate():
            try:
                while True:
                    kind, value = await events.get()
                    yield kind, value
                    if kind != "text":
                        return
            finally:
                stop.set()
        return iterate()


# -----------------------------------------------------------------------------
# The app

def create_app(engine: Engine, num_workers: int = 1, model_name: str = "nanochat", queue_size: int = QUEUE_SIZE,
               queue_timeout: float = QUEUE_TIMEOUT_S, per_client: int = PER_CLIENT,
               trust_proxy: bool = False) -> FastAPI:
    """The server around an Engine; tests pass a tiny in-memory model, main() one loaded from a checkpoint.
    trust_proxy: take the client's address (for the per-client limit) from the X-Forwarded-For header, as set by a
    reverse proxy such as a Hugging Face Space's; never do this on a server clients reach directly, where anyone
    could send the header and pose as another address."""
    pool = WorkerPool(engine, num_workers, queue_size, queue_timeout, per_client)
    app = FastAPI(title="nanochat-cpu chat server", version="1.0",
                  description="nanochat's streaming chat API and an OpenAI-compatible chat API")
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    if trust_proxy:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts="*")
    app.state.pool = pool

    async def start(conversation, max_tokens, params, request: Request):
        """Acquire a worker (Busy -> 503, TooManyFromClient -> 429) and return the event iterator."""
        prompt, max_tokens, _ = engine.fit_prompt(conversation, max_tokens)   # oldest turns dropped to fit
        client = request.client.host if request.client else "unknown"
        worker = await pool.acquire(client)
        params = dict(params, max_tokens=max_tokens)
        if params.get("seed") is None:
            params["seed"] = random.randrange(2**63)   # a fresh answer each time unless a seed is given
        return len(prompt), pool.run(worker, client, prompt, params)

    def busy_response(e: Exception):
        if isinstance(e, TooManyFromClient):
            return error_response(429, f"too many requests: {e}; wait for one to finish",
                                  headers={"Retry-After": str(RETRY_AFTER_S)})
        return error_response(503, f"server busy: {e}; retry later", headers={"Retry-After": str(RETRY_AFTER_S)})

    async def watch_disconnect(request: Request, task: asyncio.Task):
        """For non-streaming replies: cancel the reply when the client goes away."""
        while not task.done():
            if await request.is_disconnected():
                task.cancel()
                return
            await asyncio.sleep(0.1)

    sse_headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

    def sse(obj) -> str:
        return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"

    with open(UI_PATH, encoding="utf-8") as f:
        page = f.read()
    headers = page_headers(page)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers=headers)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name}

    @app.get("/stats")
    async def stats():
        return pool.snapshot()

    @app.post("/chat/completions", responses={400: {}, 413: {}, 429: {}, 503: {}})
    async def chat(req: ChatRequest, request: Request):
        params = {"temperature": req.temperature, "top_k": req.top_k, "seed": req.seed}
        try:
            _, events = await start(req._conversation, req.max_tokens, params, request)
        except (Busy, TooManyFromClient) as e:
            return busy_response(e)

        async def stream():
            try:
                async for kind, value in events:
                    if kind == "text":
                        yield sse({"token": value})
                    elif kind == "end":
                        yield sse({"done": True, "finish_reason": value.finish_reason,
                                   "tokens": value.completion_tokens})
                    else:
                        yield sse({"error": value})
            finally:
                await events.aclose()
        return ClosingStreamingResponse(stream(), media_type="text/event-stream", headers=sse_headers)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": int(pool.started),
                                            "owned_by": "nanochat-cpu"}]}

    @app.post("/v1/chat/completions", responses={400: {}, 413: {}, 429: {}, 503: {}})
    async def openai_chat(req: OpenAIChatRequest, request: Request):
        max_tokens = req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS
        temperature = 1.0 if req.temperature is None else req.temperature
        params = {"temperature": temperature, "top_k": req.top_k, "top_p": req.top_p, "seed": req.seed}
        try:
            n_prompt, events = await start(req._conversation, max_tokens, params, request)
        except (Busy, TooManyFromClient) as e:
            return busy_response(e)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": completion_id, "created": created, "model": model_name}

        def usage(reply):
            return {"prompt_tokens": n_prompt, "completion_tokens": reply.completion_tokens,
                    "total_tokens": n_prompt + reply.completion_tokens}

        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)

            def chunk(delta, finish_reason=None):
                return sse({**base, "object": "chat.completion.chunk",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]})

            async def stream():
                try:
                    yield chunk({"role": "assistant", "content": ""})
                    async for kind, value in events:
                        if kind == "text":
                            yield chunk({"content": value})
                        elif kind == "end":
                            yield chunk({}, value.finish_reason)
                            if include_usage:
                                yield sse({**base, "object": "chat.completion.chunk", "choices": [],
                                           "usage": usage(value)})
                        else:
                            yield sse({"error": {"message": value, "type": "server_error", "param": None,
                                                 "code": None}})
                    yield sse("[DONE]")
                finally:
                    await events.aclose()
            return ClosingStreamingResponse(stream(), media_type="text/event-stream", headers=sse_headers)

        async def collect():
            pieces = []
            try:
                async for kind, value in events:
                    if kind == "text":
                        pieces.append(value)
                    elif kind == "end":
                        return "".join(pieces), value
                    else:
                        raise RuntimeError(value)
            finally:
                await events.aclose()

        task = asyncio.ensure_future(collect())
        watcher = asyncio.ensure_future(watch_disconnect(request, task))
        try:
            text, reply = await task
        except asyncio.CancelledError:
            return error_response(499, "client closed the request")
        except RuntimeError as e:
            return error_response(500, str(e))
        finally:
            watcher.cancel()
        return {**base, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": reply.finish_reason}],
                "usage": usage(reply)}

    return app


# -----------------------------------------------------------------------------
# Entry point

def server_config(app: FastAPI, **kwargs):
    """uvicorn's settings with the connection limits (used by main and by the tests' live servers). A client that
    sends its body slowly holds a connection, not a worker; MAX_CONNECTIONS bounds how many it can hold."""
    import uvicorn
    # proxy_headers off: uvicorn would otherwise trust X-Forwarded-For from 127.0.0.1; create_app(trust_proxy=)
    # is the one place that decides
    return uvicorn.Config(app, limit_concurrency=MAX_CONNECTIONS, proxy_headers=False, **kwargs)


def main(argv=None):
    parser = cli.parser("Chat web server (UI + nanochat and OpenAI-compatible APIs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every interface)")
    parser.add_argument("--port", type=cli.nonneg_int, default=8000, help="port to listen on")
    parser.add_argument("--num-workers", type=cli.positive_int, default=1, help="replies generated at the same time")
    parser.add_argument("--queue-size", type=cli.nonneg_int, default=QUEUE_SIZE,
                        help="requests that may wait for a worker")
    parser.add_argument("--per-client", type=cli.positive_int, default=PER_CLIENT,
                        help="replies one client address may have generating or waiting at once (more -> 429)")
    parser.add_argument("--trust-proxy", action="store_true",
                        help="behind a reverse proxy (e.g. a Hugging Face Space): the client address of the "
                             "per-client limit comes from X-Forwarded-For; never set it on a directly reachable server")
    cli.add_checkpoint_args(parser)
    cli.add_inference_args(parser, compile_default=True)
    cli.add_system_args(parser)
    args = parser.parse_args(argv)

    import uvicorn
    from nanochat.common import compute_init, logger
    from nanochat.engine import load_engine_from_args
    device = compute_init(args.device_type).device
    engine, name = load_engine_from_args(args, device)
    if args.compile and args.backend == "torch":
        logger.info("compiling the decode step (one short generation)...")
        try:
            engine.generate_batch(engine.tokenizer.encode("hello", prepend="<|bos|>"), max_tokens=4, temperature=0.0)
        except Exception as e:  # noqa: BLE001 - e.g. no C++ compiler for inductor: serve uncompiled instead
            logger.warning("torch.compile failed (%s: %s); serving the eager model", type(e).__name__, e)
            engine.decode_model = engine.model
            name = name.replace(", compiled", "")
    app = create_app(engine, args.num_workers, model_name=name.split(",")[0].replace(" ", "-"),
                     queue_size=args.queue_size, per_client=args.per_client, trust_proxy=args.trust_proxy)
    logger.info("serving %s with %d worker(s) on http://%s:%d", name, args.num_workers, args.host, args.port)
    uvicorn.Server(server_config(app, host=args.host, port=args.port, log_level="info")).run()


if __name__ == "__main__":
    main()
