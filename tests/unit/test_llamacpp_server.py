"""The real llama.cpp server (SmolLM2-135M, CPU) behind ``chat.provider: llamacpp``.

Our client settings (``max_retries=0``, timeouts, usage parsing, JSON-schema structured
output) are checked against a real OpenAI-compatible implementation, not only the fake
server; and the server's lifetime: one per machine, shared by processes, stopped when the
last hold ends or when every registered process is gone (SIGKILL included).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from lakechain.chains.chat_models import chat_server, llamacpp_spec, make_chat_model
from lakechain.chains.errors import classify
from lakechain.config import load_settings
from lakechain.runtime import llamacpp
from lakechain.tasks.worker import worker_settings

REPO = Path(__file__).resolve().parents[2]
QA = [
    ("system", "Answer from the numbered context only and cite it like [1]."),
    ("human", "Context:\n[1] Azure Databricks is an Apache Spark-based analytics platform.\n\n"
              "Question: What is Azure Databricks?"),
]  # fmt: skip


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    """A private state root: these tests never meet a server of another test or run."""
    root = tmp_path / "llamacpp"
    monkeypatch.setenv(llamacpp.STATE_DIR_ENV, str(root))
    return root


@pytest.fixture
def chat_settings(state_dir):
    return load_settings(REPO / "conf" / "local-llm.yaml")


def wait_gone(root: Path, within_s: float) -> float:
    start = time.monotonic()
    while left := llamacpp.supervisors_under(root):
        assert time.monotonic() - start < within_s, f"llama.cpp server still running: {left}"
        time.sleep(0.05)
    return time.monotonic() - start


def test_worker_client_settings_work_against_the_real_server(chat_settings, state_dir):
    settings = worker_settings(chat_settings)
    with chat_server(settings.chat):
        model = make_chat_model(settings.chat)
        assert isinstance(model, ChatOpenAI)
        assert model.max_retries == 0 and model.request_timeout == min(120.0, settings.tasks.timeout_s)
        assert str(model.openai_api_base).startswith("http://127.0.0.1:")
        reply = model.invoke(QA)
        usage = reply.usage_metadata
        assert usage and usage["input_tokens"] > 20 and 0 < usage["output_tokens"] <= settings.chat.max_tokens
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert reply.response_metadata["model_name"] == "SmolLM2-135M-Instruct.Q4_1"
        assert reply.response_metadata["finish_reason"] in ("stop", "length")
        assert str(reply.content).strip()
    assert wait_gone(state_dir, 5) < 5, "the run's hold ended: the server must stop"


class Colour(BaseModel):
    colour: Literal["red", "green", "blue"]
    confidence: int


def test_structured_output_uses_the_servers_json_schema_grammar(chat_settings, state_dir):
    chat_settings.chat.structured_output = True
    with chat_server(chat_settings.chat):
        model = make_chat_model(chat_settings.chat)
        structured = model.with_structured_output(Colour, method="json_schema", include_raw=True)
        out = structured.invoke("The sky on a clear day: which colour, and how sure are you (0-10)?")
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], Colour)
    raw = json.loads(out["raw"].content)  # the grammar made the reply valid JSON of the schema
    assert set(raw) == {"colour", "confidence"} and raw["colour"] in ("red", "green", "blue")
    assert out["raw"].usage_metadata["output_tokens"] > 0


def test_a_timeout_is_one_attempt_and_classified_retryable(chat_settings, state_dir):
    chat_settings.chat.timeout_s, chat_settings.chat.max_tokens = 0.05, 400
    with chat_server(chat_settings.chat):
        model = make_chat_model(worker_settings(chat_settings).chat)
        start = time.monotonic()
        with pytest.raises(openai.APITimeoutError) as err:
            model.invoke("Write a long story about a lighthouse keeper.")
        elapsed = time.monotonic() - start
    info = classify(err.value)
    assert (info.kind, info.retryable) == ("timeout", True)
    assert elapsed < 1.0, f"{elapsed:.2f}s: the client retried on its own (max_retries must be 0)"


def _client_script(hold: bool = False, sleep_s: float = 60) -> str:
    return (
        "import json, sys, time\n"
        "from lakechain.config import load_settings\n"
        "from lakechain.chains.chat_models import llamacpp_spec\n"
        "from lakechain.runtime import llamacpp\n"
        f"spec = llamacpp_spec(load_settings({str(REPO / 'conf' / 'local-llm.yaml')!r}).chat)\n"
        f"ep = llamacpp.acquire(spec, hold={hold})\n"
        "print(json.dumps({'port': ep.port, 'pid': ep.pid, 'started': ep.started_here}), flush=True)\n"
        f"time.sleep({sleep_s})\n"
    )


def _spawn_client(**kw) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", _client_script(**kw)], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy(), start_new_session=True)  # fmt: skip
    line = proc.stdout.readline()
    assert line, f"client failed (rc={proc.poll()})"
    return proc, json.loads(line)


def test_processes_share_one_server_and_a_sigkilled_client_leaves_none(chat_settings, state_dir):
    first, a = _spawn_client()
    second, b = _spawn_client()
    try:
        assert a["started"] and not b["started"], "the second process must reuse the first one's server"
        assert (a["port"], a["pid"]) == (b["port"], b["pid"])
        assert llamacpp.supervisors_under(state_dir) == [a["pid"]]
        ep = llamacpp.acquire(llamacpp_spec(chat_settings.chat))  # this process: a third client
        assert (ep.port, ep.started_here) == (a["port"], False)
        assert ep.load_s > 0
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        os.killpg(second.pid, signal.SIGKILL)
        first.wait(10)
        second.wait(10)
    assert llamacpp.supervisors_under(state_dir) == [a["pid"]], "this process is still a registered client"
    llamacpp.stop(llamacpp_spec(chat_settings.chat))
    assert not llamacpp.supervisors_under(state_dir)


def test_sigkill_of_every_client_stops_the_server(chat_settings, state_dir):
    proc, info = _spawn_client(hold=True)
    assert llamacpp.supervisors_under(state_dir) == [info["pid"]]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    took = wait_gone(state_dir, 5)
    assert took < 5
    assert llamacpp.read_state(llamacpp.state_dir(llamacpp_spec(chat_settings.chat))) is None


def test_a_broken_model_file_fails_with_the_servers_reason(chat_settings, state_dir, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    chat_settings.chat.llamacpp.model_path = str(bad)
    chat_settings.chat.llamacpp.start_timeout_s = 60
    chat_settings.chat.check_remote("chat")  # the file exists: the server is what refuses it
    with pytest.raises(llamacpp.LlamaServerError, match="failed to start|exited while loading") as err:
        llamacpp.acquire(llamacpp_spec(chat_settings.chat))
    assert "log:" in str(err.value)
    wait_gone(state_dir, 5)
