"""A real OpenAI-compatible chat-completions server on 127.0.0.1 (stdlib http.server, one thread).

Routes are served under /v1 only (like vLLM): a base URL without /v1 gets 404s.
The `model` field picks the behaviour (one quirk of a real server each):
  echo        n choices echoing the last user message (+seed); SSE when stream=true
  single      ignores n: always one choice (like Ollama)
  nrefused    n > 1 answered 500 "Only one completion choice is allowed" (like llama.cpp)
  nrefused400 the same refusal as a 400
  judge       answers logprobs requests with top_logprobs for yes/no
  flaky       `flaky_status` (429) for the first `flaky_failures` requests, then like echo
  broken      always 500
  slow        sleeps `slow_seconds`, then like echo
  hang        never answers (until the server stops)
  null        `content: null`, finish_reason "length" (a reasoning model that spent its tokens)
  malformed   200 with a body that is not JSON
  teacher     deterministic answers to the synthesis prompts (engine.prompts); with a
              `response_format` JSON schema it answers in the schema's shape
  teacher-noschema  the same, but refuses `response_format` with a 400 (servers without it)
anything else: 404. A wrong bearer key: 401. `fail_after=K`: 500 for every request after K.
`retry_after` (a string) is sent as the Retry-After header of every 429/5xx reply.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = "test-key"


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and hung up
            return
        super().handle_error(request, client_address)


class FakeOpenAI:
    def __init__(self, api_key: str = KEY):
        self.api_key = api_key
        self.requests: list[dict] = []
        self.flaky_failures = 2
        self.slow_seconds = 2.0
        self.fail_after: int | None = None
        self.flaky_status = 429
        self.retry_after: str | None = None
        self.release = threading.Event()  # ends the `hang` model's wait
        self.times: list[tuple[str, float]] = []  # (model, monotonic arrival time) per request
        self.ok_count = 0
        self._counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.app = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.times.clear()
            self._counts.clear()
            self.fail_after = None
            self.flaky_status = 429
            self.retry_after = None
            self.flaky_failures = 2
            self.slow_seconds = 2.0
            self.ok_count = 0

    def count(self, model: str) -> int:
        with self.lock:
            self._counts[model] = self._counts.get(model, 0) + 1
            return self._counts[model]

    def calls(self, model: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if model is None or r.get("model") == model]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    @property
    def app(self) -> FakeOpenAI:
        return self.server.app  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        if (status == 429 or status >= 500) and self.app.retry_after is not None:
            self.send_header("Retry-After", self.app.retry_after)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, message: str, code: str = "error") -> None:
        self._json(status, {"error": {"message": message, "type": code, "code": code}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})
        else:
            self._error(404, "not found")

    def do_POST(self) -> None:
        app = self.app
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with app.lock:
            app.requests.append(body)
            app.times.append((body.get("model", ""), time.monotonic()))
        if self.headers.get("Authorization") != f"Bearer {app.api_key}":
            return self._error(401, "Incorrect API key provided", "invalid_api_key")
        if self.path != "/v1/chat/completions":
            return self._error(404, f"no route {self.path}")
        model = body.get("model", "")
        if model not in MODELS:
            return self._error(404, f"The model `{model}` does not exist", "model_not_found")
        with app.lock:
            if app.fail_after is not None and app.ok_count >= app.fail_after:
                failing = True
            else:
                failing = False
        if failing:
            return self._error(500, "the server is failing on purpose", "server_error")
        if model == "broken":
            return self._error(500, "internal error", "server_error")
        if model == "flaky" and app.count(model) <= app.flaky_failures:
            return self._error(app.flaky_status, "Rate limit reached" if app.flaky_status == 429 else "overloaded", "rate_limit_exceeded")
        if model.startswith("nrefused") and int(body.get("n") or 1) > 1:
            return self._error(400 if model == "nrefused400" else 500, "Only one completion choice is allowed", "invalid_request_error")
        if model == "teacher-noschema" and "response_format" in body:
            return self._error(400, "response_format is not supported by this server", "invalid_request_error")
        if model == "slow":
            time.sleep(app.slow_seconds)
        if model == "hang":
            app.release.wait(600)
            return self._error(503, "shutting down", "server_error")
        if model == "malformed":
            return self._send(200, b"{this is not json")
        with app.lock:
            app.ok_count += 1
        texts = MODELS[model](body)
        if body.get("stream"):
            return self._stream(model, texts[0])
        n = 1 if model == "single" else int(body.get("n") or 1)
        choices = []
        for i in range(n):
            choice = {"index": i, "message": {"role": "assistant", "content": texts[i % len(texts)]}, "finish_reason": "stop"}
            if model == "null":
                choice = {"index": i, "message": {"role": "assistant", "content": None, "reasoning_content": "Let me think"},
                          "finish_reason": "length"}  # fmt: skip
            if body.get("logprobs") and model == "judge":
                top = [{"token": "yes", "logprob": -0.1, "bytes": None}, {"token": "no", "logprob": -2.4, "bytes": None}]
                choice["logprobs"] = {"content": [{"token": "yes", "logprob": -0.1, "bytes": None, "top_logprobs": top}]}
            choices.append(choice)
        prompt_tokens = sum(len(m["content"].split()) for m in body.get("messages", []))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 5 * n, "total_tokens": prompt_tokens + 5 * n}
        self._json(200, {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": model, "choices": choices, "usage": usage})

    def _stream(self, model: str, text: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        words = text.split(" ")
        for i, w in enumerate(words):
            delta = {"content": w + (" " if i < len(words) - 1 else "")}
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _last_user(body: dict) -> str:
    users = [m["content"] for m in body.get("messages", []) if m["role"] == "user"]
    return users[-1] if users else ""


def _echo(body: dict) -> list[str]:
    n = int(body.get("n") or 1)
    seed = body.get("seed")
    return [f"echo {i} seed={seed}: {_last_user(body)[:60]}" for i in range(n)]


def _field(text: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*)$", text, re.M)
    return m.group(1).strip() if m else ""


def _teacher(body: dict) -> list[str]:
    """Deterministic teacher; with a JSON-schema `response_format`, the reply in the schema's shape."""
    texts = _teacher_text(body)
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
    if not schema:
        return texts
    props = schema["properties"]
    if "statements" in props or "utterances" in props:
        raw = texts[0].split("```json\n", 1)[1].split("\n```", 1)[0] if "```json" in texts[0] else texts[0]
        try:
            items = json.loads(raw)
        except json.JSONDecodeError:  # the refusal case (UNPARSABLE): left as prose
            return texts
        return [json.dumps({next(iter(props)): items})]
    if "label" in props:
        return [json.dumps({"label": texts[0].strip(".").lower()})]
    return texts  # relevance and nli_write already answer with the schema's object


def _teacher_text(body: dict) -> list[str]:
    text = _last_user(body)
    name = _field(text, "Character")
    if "Passage:" in text:
        passage = text.split("Passage:", 1)[1].split("\n\nWrite the important", 1)[0].strip()
        if "UNPARSABLE" in passage:
            return ["I am sorry, I cannot help with that."]
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", passage) if len(s.strip()) > 3]
        stmts = [s if name in s else f"{name} is linked to this: {s}" for s in sentences[:4]]
        return ["Here you go:\n```json\n" + json.dumps(stmts + ["She is mysterious."]) + "\n```\nAnything else?"]
    statement = _field(text, "Persona statement")
    if "Utterances:" in text:
        block = text.split("Utterances:", 1)[1].split("\n\n", 1)[0]
        items = re.findall(r"^(\d+)\. (.*)$", block, re.M)
        key = statement.split()[-1].strip(".").lower()
        return [json.dumps({num: ("yes" if key in u.lower() else "no") for num, u in items})]
    if "Response:" in text:
        response = _field(text, "Response")
        return ["Contradicted." if response.startswith("No,") else ("neutral" if response.startswith("Maybe") else "entailed")]
    if "User utterance:" in text:
        return [json.dumps({"entailed": f"Yes: {statement}", "neutral": "Maybe, let us talk about the weather.",
                            "contradicted": f"No, it is not true that {statement}"})]
    key = statement.split()[-1].strip(".").lower()
    return [json.dumps([f"Question {i} about {key}?" for i in range(1, 4)])]


MODELS = {
    "echo": _echo,
    "single": _echo,
    "judge": lambda body: ["yes"],
    "flaky": _echo,
    "broken": _echo,
    "slow": _echo,
    "hang": _echo,
    "null": _echo,
    "nrefused": _echo,
    "nrefused400": _echo,
    "malformed": _echo,
    "teacher": _teacher,
    "teacher-noschema": _teacher,
}
