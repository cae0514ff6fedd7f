"""LLM-as-judge against a fake OpenAI-compatible judge on 127.0.0.1: both orders, caching, rates."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import polars as pl
import pytest
from evalhelpers import chat_body, make_result, run_config, write_run

from parity import evals
from parity.store.store import query


class FakeJudge:
    """A chat-completions server answering A / B / TIE: fixed, or for the answer containing GOOD."""

    def __init__(self, mode: str = "fixed") -> None:
        self.mode = mode
        self.calls: list[dict] = []
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                judge.calls.append(body | {"_auth": self.headers.get("authorization")})
                out = json.dumps(
                    chat_body(judge.verdict(body["messages"][-1]["content"]), usage=(50, 1))
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verdict(self, prompt: str) -> str:
        if self.mode == "fixed":
            return "B"
        a = prompt.split("[Answer A]")[1].split("[Answer B]")[0]
        b = prompt.split("[Answer B]")[1]
        return "A" if "GOOD" in a and "GOOD" not in b else "B" if "GOOD" in b and "GOOD" not in a else "TIE"


@pytest.fixture
def fake_judge() -> Iterator[FakeJudge]:
    fj = FakeJudge()
    fj.thread.start()
    yield fj
    fj.server.shutdown()
    fj.server.server_close()


def _write(db, base_url: str, texts: list[tuple[str, str]]) -> None:
    rows = []
    for i, (base, cand) in enumerate(texts):
        rows.append(make_result(exchange_id=f"e{i}", response_body=chat_body(base)))
        rows.append(make_result(exchange_id=f"e{i}", provider="cand", response_body=chat_body(cand)))
    judge = {"base_url": base_url, "models": {"*": "judge-model"}, "api_key_env": "PARITY_TEST_JUDGE_KEY"}
    write_run(
        db, rows, run_config({"cand": {"base_url": "http://c/v1", "models": {"*": "*"}}, "judge": judge})
    )


def test_both_orders_then_cached(db, fake_judge, monkeypatch):
    monkeypatch.setenv("PARITY_TEST_JUDGE_KEY", "sk-test")
    _write(db, fake_judge.base_url, [("a", "b"), ("c", "d"), ("e", "f")])
    first = evals.judge(db, "r1", "judge")
    assert len(fake_judge.calls) == 6  # 3 pairs x 2 orders
    assert {c["model"] for c in fake_judge.calls} == {"judge-model"}
    assert fake_judge.calls[0]["_auth"] == "Bearer sk-test"
    row = first.row(0, named=True)
    # always "B" = position bias: each pair's two orders disagree, so every pair is a tie
    assert (row["judge_n"], row["ties"], row["judge_calls"]) == (3, 3, 6)
    assert query(db, "SELECT count(*), count(DISTINCT key) FROM judgments")[0] == (6, 6)
    again = evals.judge(db, "r1", "judge")
    assert len(fake_judge.calls) == 6  # re-run: every verdict came from the store
    assert again.row(0, named=True)["judge_calls"] == 0
    assert again.drop("judge_calls").equals(first.drop("judge_calls"))


def test_content_judge_rates_and_summary(db, fake_judge, monkeypatch):
    monkeypatch.setenv("PARITY_TEST_JUDGE_KEY", "sk-test")
    fake_judge.mode = "content"
    _write(
        db, fake_judge.base_url, [("meh", "GOOD 1"), ("meh", "GOOD 2"), ("GOOD 3", "meh"), ("same", "same!")]
    )
    s = evals.summary(db, "r1", judge="judge").filter(pl.col("provider") == "cand").row(0, named=True)
    assert s["judge_n"] == 4
    assert s["judge_win_rate"] == 0.5 and s["judge_loss_rate"] == 0.25 and s["judge_tie_rate"] == 0.25
    assert 0 < s["judge_win_rate_ci_low"] < 0.5 < s["judge_win_rate_ci_high"] < 1


def test_judge_from_providers_toml_and_errors(db, fake_judge, monkeypatch, tmp_path):
    monkeypatch.delenv("PARITY_TEST_JUDGE_KEY", raising=False)
    _write(db, fake_judge.base_url, [("a", "b")])
    with pytest.raises(evals.EvalError, match="PARITY_TEST_JUDGE_KEY"):
        evals.judge(db, "r1", "judge")
    with pytest.raises(evals.EvalError, match="not a provider"):
        evals.judge(db, "r1", "nobody")
    toml = tmp_path / "providers.toml"
    toml.write_text(f'[myjudge]\nbase_url = "{fake_judge.base_url}"\nmodels = {{ "*" = "*" }}\n')
    evals.judge(db, "r1", "myjudge:tiny-judge", providers=toml)
    assert {c["model"] for c in fake_judge.calls} == {"tiny-judge"}
    toml.write_text('[dead]\nbase_url = "http://127.0.0.1:9/v1"\nmodels = { "*" = "*" }\n')
    with pytest.raises(evals.EvalError, match="failed on every call"):
        evals.judge(db, "r1", "dead:m", providers=toml)
