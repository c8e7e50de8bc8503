"""An OpenAI-compatible HTTP server for tests and benchmarks.

Why: every remote code path (embeddings, chat, images) must be exercised offline,
including the unhappy ones — rate limits with ``Retry-After``, 500s, timeouts and
garbage bodies. This server answers deterministically and can inject those faults
either from a scripted FIFO queue (exact sequences for retry tests) or at seeded
random rates (load tests).

    with FakeOpenAIServer() as srv:
        srv.script("429", "ok")
        client = openai.OpenAI(base_url=srv.url, api_key="test")
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import numpy as np

FAULTS = ("429", "500", "timeout", "malformed", "ok")
DEFAULT_DIM = 384

ChatResponder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


# --- deterministic payloads (pure) ------------------------------------------------------


def fake_embedding(text: str, dim: int = DEFAULT_DIM) -> list[float]:
    """A unit vector seeded by the text's hash: same text → same vector, any dim."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    v /= np.linalg.norm(v) or 1.0
    return v.tolist()


def count_tokens(text: str) -> int:
    """A cheap whitespace token count, good enough for ``usage`` fields."""
    return len(text.split())


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def default_chat_reply(request: dict[str, Any]) -> str:
    """Quote the first sentence after ``[1]`` in the last user message, citing it; else refuse."""
    messages = request.get("messages") or []
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = _content_text(last_user.get("content")) if last_user else ""
    idx = text.find("[1]")
    if idx < 0:
        return "Not in context."
    rest = text[idx + 3 :].lstrip(" :\t\n")
    m = re.search(r"(.+?[.!?])(\s|$)", rest, flags=re.S)
    sentence = (m.group(1) if m else rest.split("\n", 1)[0]).strip()
    if not sentence:
        return "Not in context."
    return f"{sentence} [1]"


def fake_png(prompt: str, width: int, height: int) -> bytes:
    """A real PNG whose colours derive from the prompt (deterministic per prompt and size)."""
    from PIL import Image, ImageDraw

    h = hashlib.sha256(prompt.encode("utf-8")).digest()
    img = Image.new("RGB", (width, height), (h[0], h[1], h[2]))
    draw = ImageDraw.Draw(img)
    draw.rectangle([width // 4, height // 4, 3 * width // 4, 3 * height // 4], fill=(h[3], h[4], h[5]))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _parse_size(size: Any) -> tuple[int, int]:
    m = re.fullmatch(r"(\d{1,5})x(\d{1,5})", str(size or "256x256"))
    if not m:
        raise ValueError(f"invalid size {size!r}; expected WIDTHxHEIGHT")
    w, h = int(m.group(1)), int(m.group(2))
    if not (1 <= w <= 4096 and 1 <= h <= 4096):
        raise ValueError(f"size {size!r} out of range")
    return w, h


# --- server -----------------------------------------------------------------------------


class FakeOpenAIServer:
    """Threaded OpenAI-compatible server on 127.0.0.1 with fault switches.

    Attributes settable by tests (all read under a lock per request):
    ``latency_s``, ``fault_rates`` ({"429"|"500"|"timeout"|"malformed": p}), ``seed``,
    ``retry_after`` (header value for 429s), ``timeout_sleep_s``, ``chat_responder``,
    ``default_dim``.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        latency_s: float = 0.0,
        fault_rates: dict[str, float] | None = None,
        retry_after: str = "0.05",
        timeout_sleep_s: float = 5.0,
        default_dim: int = DEFAULT_DIM,
        chat_responder: ChatResponder | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self.latency_s = latency_s
        self.fault_rates: dict[str, float] = dict(fault_rates or {})
        self.retry_after = retry_after
        self.timeout_sleep_s = timeout_sleep_s
        self.default_dim = default_dim
        self.chat_responder: ChatResponder = chat_responder or default_chat_reply
        self.usage_tokenizer: Literal["whitespace", "tiktoken"] = "whitespace"
        """How ``usage`` is counted: whitespace words (cheap), or tiktoken as OpenAI does."""
        self._seed = seed
        self._rng = random.Random(seed)
        self._script: deque[str] = deque()
        self.requests: list[tuple[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self.in_flight = 0
        self.peak_in_flight = 0
        """Most requests inside their latency sleep at once: proves concurrency without timing."""
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        with self._lock:
            self._seed = value
            self._rng = random.Random(value)

    def script(self, *faults: str) -> FakeOpenAIServer:
        """Queue faults consumed one per request (any endpoint) before the random rates apply."""
        bad = [f for f in faults if f not in FAULTS]
        if bad:
            raise ValueError(f"unknown faults {bad}; choose from {FAULTS}")
        with self._lock:
            self._script.extend(faults)
        return self

    def reset(self) -> None:
        """Clear faults, latency, scripted queue, request log and counters."""
        with self._lock:
            self.latency_s = 0.0
            self.fault_rates = {}
            self._script.clear()
            self.requests.clear()
            self.counts.clear()
            self.fault_counts.clear()
            self.peak_in_flight = 0
            self._rng = random.Random(self._seed)
            self.chat_responder = default_chat_reply
            self.usage_tokenizer = "whitespace"

    def requests_for(self, path: str) -> list[Any]:
        """JSON bodies received on ``path`` (e.g. "/v1/embeddings")."""
        with self._lock:
            return [body for p, body in self.requests if p == path]

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL for OpenAI clients, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def azure_endpoint(self) -> str:
        """Endpoint for Azure OpenAI clients (deployment routes are served like /v1)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) -----------------------------------

    def _record(self, path: str, body: Any) -> tuple[str, float, str, float]:
        """Log the request and decide its fault; returns (fault, latency, retry_after, timeout_sleep)."""
        with self._lock:
            self.requests.append((path, body))
            self.counts[path] += 1
            if self._script:
                fault = self._script.popleft()
            else:
                fault = "ok"
                roll = self._rng.random()
                acc = 0.0
                for name in ("429", "500", "timeout", "malformed"):
                    acc += float(self.fault_rates.get(name, 0.0))
                    if roll < acc:
                        fault = name
                        break
            self.fault_counts[fault] += 1
            return fault, self.latency_s, str(self.retry_after), self.timeout_sleep_s

    def _answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/embeddings":
            return 200, self._embeddings(body)
        if path == "/v1/chat/completions":
            return 200, self._chat(body)
        if path == "/v1/images/generations":
            return 200, self._images(body)
        return 404, _error(f"unknown path {path}", "not_found")

    def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raw = body.get("input")
        inputs = raw if isinstance(raw, list) else [raw]
        dim = int(body.get("dimensions") or self.default_dim)
        data, tokens = [], 0
        for i, item in enumerate(inputs):
            # Token-id lists (what OpenAIEmbeddings sends after tiktoken) hash by their ids.
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(item) if isinstance(item, list) else count_tokens(text)
            vec = fake_embedding(text, dim)
            if body.get("encoding_format") == "base64":
                emb: Any = base64.b64encode(np.asarray(vec, dtype=np.float32).tobytes()).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.chat_responder(body)
        if isinstance(reply, dict):
            content = json.dumps(reply)
        else:
            content = str(reply)
        messages = body.get("messages") or []
        if self.usage_tokenizer == "tiktoken":  # as OpenAI counts: tiktoken + per-message overhead
            from lakechain.tasks import estimate

            model = str(body.get("model") or "")
            prompt_tokens = estimate.chat_prompt_tokens(messages, model)
            completion_tokens = estimate.completion_tokens(content, model)
        else:
            prompt_tokens = sum(count_tokens(_content_text(m.get("content"))) for m in messages)
            completion_tokens = count_tokens(content)
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        return {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-chat"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _images(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = str(body.get("prompt") or "")
        w, h = _parse_size(body.get("size"))
        png = fake_png(prompt, w, h)
        n = max(1, int(body.get("n") or 1))
        item = {"b64_json": base64.b64encode(png).decode("ascii"), "revised_prompt": f"{prompt} (rendered)"}
        return {"created": int(time.time()), "data": [dict(item) for _ in range(n)]}


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# Azure OpenAI routes (``/openai/deployments/<name>/embeddings?api-version=...``) map to /v1/.
_AZURE_PATH = re.compile(r"^/openai/deployments/[^/]+/(embeddings|chat/completions|images/generations)$")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeOpenAIServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle plus delayed ACKs each call
    # would wait ~40 ms for nothing.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr logs
        return

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its own timeout fired)

    def _send_json(self, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), headers)

    def do_GET(self) -> None:  # http.server API
        path = self.path.split("?", 1)[0]
        if path == "/v1/models":
            self._send_json(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._send_json(404, _error(f"unknown path {path}", "not_found"))

    def do_POST(self) -> None:  # http.server API
        path = _AZURE_PATH.sub(r"/v1/\1", self.path.split("?", 1)[0])
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self.fake._record(path, None)
            self._send_json(400, _error("request body is not valid JSON", "invalid_request_error"))
            return
        fault, latency, retry_after, timeout_sleep = self.fake._record(path, body)
        if latency > 0:
            with self.fake._lock:
                self.fake.in_flight += 1
                self.fake.peak_in_flight = max(self.fake.peak_in_flight, self.fake.in_flight)
            try:
                time.sleep(latency)
            finally:
                with self.fake._lock:
                    self.fake.in_flight -= 1
        if fault == "timeout":
            time.sleep(timeout_sleep)
        if fault == "429":
            self._send_json(
                429,
                _error("Rate limit reached (fake server)", "rate_limit_error", "rate_limit_exceeded"),
                {"Retry-After": retry_after},
            )
            return
        if fault == "500":
            self._send_json(500, _error("Internal server error (fake server)", "server_error"))
            return
        try:
            status, payload = self.fake._answer(path, body if isinstance(body, dict) else {})
        except (ValueError, TypeError) as exc:
            self._send_json(400, _error(str(exc), "invalid_request_error"))
            return
        if fault == "malformed":
            text = json.dumps(payload).encode("utf-8")
            self._send(200, text[: max(1, len(text) // 2)])
            return
        self._send_json(status, payload)
