#!/usr/bin/env python3
"""Scriptable fake LLM server speaking the OpenAI Chat Completions API (SSE streaming).

Stdlib only. Drives real `pi` processes with no network and no API key: the integration tests use it
(``integration_tests/harness/fake_llm.py`` runs this module) and so does the demo (``python -m hypivisor.demo``,
in-process with ``demo=True``).

Start:   python -m hypivisor.demo.fake_llm --port 0 --port-file /tmp/port --log /tmp/requests.jsonl [--demo]
         (--port 0 picks a free port; it is printed as "LISTENING <port>" and written to --port-file)

Endpoints
  GET  /v1/models                 -> model list (ids from --models, default "fake-model")
  POST /v1/chat/completions       -> stream (SSE) or plain JSON completion
  POST /_fake/script              -> body: JSON list of scripted responses, appended to a FIFO queue
  POST /_fake/reset               -> clear the queue and the request log
  GET  /_fake/requests            -> JSON list of all request bodies received so far
  GET  /_fake/health              -> {"ok": true}

A scripted response (queue item) is an object with any of:
  {"text": "...", "thinking": "...", "tool_calls": [{"name": "bash", "arguments": {"command": "echo hi"}}],
   "delay": 0.02, "chunk": 8, "http_status": 500, "error_body": {...}, "finish_reason": "stop"}

Without a queued script, the reply depends on the LAST message of the request:
  role "tool"                          -> text "Tool result received: <tool output>"
  user text contains "TOOLCALL"        -> tool call bash {"command": "echo hi"}
      ("TOOLCALL: <cmd>" on one line uses <cmd> instead)
  user text contains "THINK"           -> reasoning_content deltas, then text
  user text contains "SLOW"            -> 40 chunks, 0.25 s apart (for abort/steer tests)
  user text contains "FAIL500"         -> HTTP 500 error
  anything else                        -> "Hello from fake LLM. You said: <text>"

With --demo (the demo's agents), "anything else" and tool results get demo-friendly replies chosen by the prompt
(the keywords above still work):
  "think", "plan", "why", "how", "design", "explain"   -> reasoning (thinking) then a markdown plan
  "run", "list", "files", "ls", "bash", "shell", "git", "test", "check"
                                                       -> a bash tool call (inspects the project), then a
                                                          markdown summary of its output
  anything else                                        -> a markdown answer (heading, list, table, code)
"""

import argparse
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"queue": [], "requests": [], "lock": threading.Lock(), "log": None, "models": ["fake-model"], "demo": False}

THINK_WORDS = ("think", "plan", "why", "how", "design", "explain")
TOOL_WORDS = ("run", "list", "files", "ls", "bash", "shell", "git", "test", "check")
DEMO_COMMAND = "ls -la && echo && head -n 20 README.md"


def _text_of(content):
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _words(text):
    return set(re.findall(r"[a-z]+", text.lower()))


def demo_plan(role, text):
    """A demo-friendly reply for a prompt without a test keyword: markdown, thinking or a bash tool call."""
    if role == "tool":
        out = text.strip()[:1500] or "(no output)"
        lines = len(out.splitlines())
        return {
            "text": f"The command ran in this project and printed **{lines} line(s)**:\n\n```text\n{out}\n```\n\n"
            "Everything looks in place. Ask me to *plan* a change, or say hello in the terminal "
            "too: the dashboard and the TUI show the same conversation.",
            "chunk": 24,
        }
    words = _words(text)
    if words & set(TOOL_WORDS):
        return {
            "text": "Let me look at the project first.",
            "tool_calls": [{"name": "bash", "arguments": {"command": DEMO_COMMAND}}],
        }
    if words & set(THINK_WORDS):
        topic = text.strip().splitlines()[0][:80] if text.strip() else "this"
        return {
            "thinking": "The user wants a plan. I should read what exists, keep the change small, test it, "
            "and say how to check it. Three steps should do; list risks last.",
            "text": f"## Plan: {topic}\n\n1. **Read** the code that is involved and its tests.\n"
            "2. **Change** the smallest thing that solves it, behind a test that fails first.\n"
            "3. **Verify** with the test suite, then try it by hand.\n\n"
            "| step | risk | check |\n|---|---|---|\n| read | none | - |\n"
            "| change | regressions | `make test` |\n| verify | flaky tests | run twice |\n\n"
            "Say *run the tests* and I will use the bash tool.",
            "delay": 0.03,
        }
    said = text.strip()[:200] or "(nothing)"
    return {
        "text": "# Hello from a scripted model\n\n"
        f"You said: *{said}*\n\n"
        "I am the demo's **fake LLM**: no API key, no network, but a real `pi` agent runs this "
        "conversation. Try:\n\n"
        "- `list the files`: I call the **bash** tool and you see its card\n"
        "- `think about a plan`: I stream **thinking** first, then a plan\n"
        "- anything else: a reply like this one\n\n"
        '```python\ndef greet(name: str) -> str:\n    return f"hello, {name}"\n```\n',
        "delay": 0.02,
    }


def default_plan(body):
    msgs = body.get("messages") or []
    last = msgs[-1] if msgs else {"role": "user", "content": ""}
    role = last.get("role")
    text = _text_of(last.get("content"))
    keyword = any(k in text for k in ("FAIL500", "TOOLCALL", "THINK", "SLOW"))
    if STATE["demo"] and (role == "tool" or not keyword):
        return demo_plan(role, text)
    if role == "tool":
        return {"text": "Tool result received: " + text.strip()[:500]}
    if "FAIL500" in text:
        return {"http_status": 500, "error_body": {"error": {"message": "fake failure", "type": "server_error"}}}
    if "TOOLCALL" in text:
        m = re.search(r"TOOLCALL:\s*(.+)", text)
        cmd = m.group(1).strip() if m else "echo hi"
        return {"text": "", "tool_calls": [{"name": "bash", "arguments": {"command": cmd}}]}
    if "THINK" in text:
        return {"thinking": "Let me think about this carefully.", "text": "Thought about it. You said: " + text}
    if "SLOW" in text:
        return {"text": " ".join(f"w{i}" for i in range(40)), "chunk": 4, "delay": 0.25}
    return {"text": "Hello from fake LLM. You said: " + text}


def _chunks(s, n):
    return [s[i : i + n] for i in range(0, len(s), n)] or []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep stderr quiet
        pass

    # ---- helpers -------------------------------------------------------
    def _json(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return {"_raw": raw.decode(errors="replace")}

    def _write_chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sse(self, obj):
        self._write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    # ---- routes --------------------------------------------------------
    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/models"):
            return self._json(
                200,
                {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in STATE["models"]]},
            )
        if path == "/_fake/requests":
            with STATE["lock"]:
                return self._json(200, list(STATE["requests"]))
        if path == "/_fake/health":
            return self._json(200, {"ok": True})
        return self._json(404, {"error": {"message": "not found: " + self.path}})

    def do_POST(self):
        path = self.path.split("?")[0].rstrip("/")
        body = self._read_body()
        if path == "/_fake/script":
            items = body if isinstance(body, list) else [body]
            with STATE["lock"]:
                STATE["queue"].extend(items)
                return self._json(200, {"queued": len(STATE["queue"])})
        if path == "/_fake/reset":
            with STATE["lock"]:
                STATE["queue"].clear()
                STATE["requests"].clear()
            return self._json(200, {"ok": True})
        if path.endswith("/chat/completions"):
            return self._completion(body)
        return self._json(404, {"error": {"message": "not found: " + self.path}})

    def _completion(self, body):
        with STATE["lock"]:
            STATE["requests"].append(body)
            plan = STATE["queue"].pop(0) if STATE["queue"] else None
            if STATE["log"]:
                with open(STATE["log"], "a") as f:
                    f.write(json.dumps({"ts": time.time(), "body": body, "scripted": plan is not None}) + "\n")
        if plan is None:
            plan = default_plan(body)

        if plan.get("http_status"):
            return self._json(
                int(plan["http_status"]), plan.get("error_body") or {"error": {"message": "scripted error"}}
            )

        model = body.get("model", "fake-model")
        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        created = int(time.time())
        delay = float(plan.get("delay", 0.01))
        size = int(plan.get("chunk", 6))
        text = plan.get("text", "")
        thinking = plan.get("thinking", "")
        tool_calls = plan.get("tool_calls") or []
        finish = plan.get("finish_reason") or ("tool_calls" if tool_calls else "stop")
        prompt_chars = len(json.dumps(body.get("messages", [])))
        completion_chars = len(text) + len(thinking) + len(json.dumps(tool_calls))
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": max(1, completion_chars // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]

        def frame(delta, finish_reason=None):
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        if not body.get("stream"):
            msg = {"role": "assistant", "content": text or None}
            if tool_calls:
                msg["tool_calls"] = [
                    {
                        "id": "call_" + uuid.uuid4().hex[:8],
                        "type": "function",
                        "function": {"name": tc["name"], "arguments": json.dumps(tc.get("arguments", {}))},
                    }
                    for tc in tool_calls
                ]
            return self._json(
                200,
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
                    "usage": usage,
                },
            )

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._sse(frame({"role": "assistant", "content": ""}))
            for piece in _chunks(thinking, size):
                time.sleep(delay)
                self._sse(frame({"reasoning_content": piece}))
            for piece in _chunks(text, size):
                time.sleep(delay)
                self._sse(frame({"content": piece}))
            for i, tc in enumerate(tool_calls):
                args = json.dumps(tc.get("arguments", {}))
                call_id = tc.get("id") or "call_" + uuid.uuid4().hex[:8]
                self._sse(
                    frame(
                        {
                            "tool_calls": [
                                {
                                    "index": i,
                                    "id": call_id,
                                    "type": "function",
                                    "function": {"name": tc["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                )
                for piece in _chunks(args, 12):
                    time.sleep(delay)
                    self._sse(frame({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
            self._sse(frame({}, finish))
            self._sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": usage,
                }
            )
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")  # end of chunked body
        except (BrokenPipeError, ConnectionResetError):
            pass  # client aborted (e.g. pi abort)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that hangs up (pi killed, aborted run) is normal here: no traceback on stderr."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def serve(host="127.0.0.1", port=0, demo=False, models=("fake-model",)):
    """Start the server in a daemon thread (in-process use, e.g. the demo); returns it (``.server_address``,
    ``.shutdown()``)."""
    STATE["demo"] = demo
    STATE["models"] = list(models)
    srv = Server((host, port), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, name="fake-llm", daemon=True).start()
    return srv


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hypivisor.demo.fake_llm", description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--log", help="append every request body as JSONL here")
    ap.add_argument("--models", default="fake-model", help="comma separated model ids for /v1/models")
    ap.add_argument("--script", help="JSON file with a list of scripted responses to preload")
    ap.add_argument("--demo", action="store_true", help="demo-friendly replies when no test keyword is given")
    a = ap.parse_args(argv)
    STATE["log"] = a.log
    STATE["demo"] = a.demo
    STATE["models"] = a.models.split(",")
    if a.script:
        with open(a.script) as f:
            STATE["queue"].extend(json.load(f))
    srv = Server((a.host, a.port), Handler)
    srv.daemon_threads = True
    port = srv.server_address[1]
    if a.port_file:
        with open(a.port_file, "w") as f:
            f.write(str(port))
    print(f"LISTENING {port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
