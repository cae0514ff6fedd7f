"""A provider whose usage says 0 tokens for real answers: a real replay to the fake's zero-usage profile."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from replayhelpers import T0, fake_table, make_chat_workload, make_exchange, providers_file, write_exchanges

from parity import evals
from parity.cli import main
from parity.replayer.tokens import answer_text, estimate_tokens
from parity.store.store import connect

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it

PRICING = "[{name}.pricing]\ninput_per_1m = 1.0\noutput_per_1m = 4.0\n"


def test_zero_token_usage_is_estimated_and_never_free(db: Path, tmp_path: Path, fakes, capsys) -> None:
    rows = make_chat_workload(4, gap_s=0.5)  # streamed, with include_usage
    rows += [make_exchange(stream=False, recorded_at=T0 + timedelta(seconds=3 + i)) for i in range(2)]
    write_exchanges(db, rows)
    zero = fakes("zero", "zero-usage", answer_min_tokens=8, answer_max_tokens=12)
    honest = fakes("honest", "instant", answer_min_tokens=8, answer_max_tokens=12)
    pf = providers_file(
        tmp_path,
        fake_table("zero", zero, PRICING.format(name="zero"))
        + fake_table("honest", honest, PRICING.format(name="honest")),
    )
    args = ["replay", "--db", str(db), "--providers", str(pf), "--run", "z", "--no-progress"]
    assert main(args) == 0, capsys.readouterr()
    con = connect(db)
    try:
        cells = con.execute(
            "SELECT provider, status, response_body, prompt_tokens, completion_tokens, tokens_estimated, "
            "cost_usd, cost_estimated FROM results WHERE run_id = 'z' AND provider = 'zero'"
        ).fetchall()
    finally:
        con.close()
    assert len(cells) == len(rows) and all(c[1] == 200 for c in cells)
    for _, _, body, prompt, completion, est, cost, cost_est in cells:
        b = json.loads(body)
        assert b["usage"]["completion_tokens"] == 0 and answer_text(b)  # the provider's usage: 0 for text
        assert est and cost_est
        assert completion == estimate_tokens(answer_text(b)) > 0
        assert prompt == 12  # the recorded prompt count stands in for the 0
        assert cost == pytest.approx((prompt * 1.0 + completion * 4.0) / 1e6) and cost > 0
    c = {r["provider"]: r for r in evals.summary(db, "z", questions=("cost",)).iter_rows(named=True)}
    assert c["zero"]["cost_total_usd"] == pytest.approx(sum(x[6] for x in cells))
    assert c["zero"]["cost_estimated_share"] == 1.0 and c["zero"]["cost_priced_share"] == 1.0
    assert c["honest"]["cost_estimated_share"] == 0.0
    # the delta is a real comparison, never -100%
    assert c["zero"]["cost_delta_pct"] is not None and c["zero"]["cost_delta_pct"] > -100
