"""How far does a sweep's capacity estimate land from a known capacity, and where is the client's own ceiling?

1. Estimate error: fake servers of known capacity (``--slots N --service-ms MS``: capacity = N / MS)
   swept together with ``parity replay --sweep`` (fixed rates in 25% steps around each capacity,
   Poisson arrivals, no SLO but the keep-up rule) and then ``--sweep auto``; for each server, the
   reported ``capacity.max_rate``, the bracket ``[max_rate, first_bad_rate)``, the peak achieved rate,
   and their error relative to the true capacity.
2. Client ceiling: one server with enough slots that it never queues (service 50 ms), swept at rising
   rates until the client cannot keep its schedule: per step the offered and achieved rate, schedule lag
   p50/p99 and the sending process's CPU share, and the highest rate not flagged client-bound.

The traffic is the shared corpus's real chat requests (synthetic ones if it is absent), cycled.
Bounded: about 5 minutes (``--quick``: about 2); saturated steps drain their backlog, which takes most of it.

    .venv/bin/python bench/sweep_capacity.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "sweep"))

from sweephelpers import Server, real_chat_rows, write_exchanges  # noqa: E402

from parity.cli import main  # noqa: E402
from parity.evals import evaluate  # noqa: E402


def _quiet(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _sweep(db: Path, pf: Path, run: str, *args: str) -> dict:
    t = time.perf_counter()
    code, _, err = _quiet(
        ["replay", "--db", str(db), "--providers", str(pf), "--run", run, "--no-progress", *args]
    )
    if code != 0:
        raise SystemExit(f"replay {run} failed ({code}):\n{err}")
    ev = evaluate(str(db), run, questions=())
    return {
        "seconds": round(time.perf_counter() - t, 1),
        "sweep": ev.sweep.to_dicts(),
        "capacity": {r["provider"]: r for r in ev.capacity.to_dicts()},
    }


def estimate_error(tmp: Path, step_s: float, quick: bool) -> dict:
    shapes = (
        {"c8": (2, 250), "c20": (4, 200)} if quick else {"c8": (2, 250), "c20": (4, 200), "c40": (8, 200)}
    )
    servers = {n: Server(*shape) for n, shape in shapes.items()}
    try:
        db = tmp / "est.duckdb"
        write_exchanges(db, real_chat_rows(32))
        pf = tmp / "est.toml"
        pf.write_text("".join(s.table(n) for n, s in servers.items()))
        caps = {n: s.capacity for n, s in servers.items()}
        rates = sorted({round(c * f, 2) for c in caps.values() for f in (0.75, 1.25)} | {4.0})
        out = {"true_capacity": caps, "rates": rates, "step_seconds": step_s}
        fixed = _sweep(
            db, pf, "fixed", "--sweep", ",".join(f"{r:g}" for r in rates), "--step-seconds", str(step_s)
        )
        auto = _sweep(db, pf, "auto", "--sweep", "auto", "--sweep-start", "4", "--step-seconds", str(step_s))
        for name, res in (("fixed", fixed), ("auto", auto)):
            rows = {}
            for prov, c in res["capacity"].items():
                true = caps[prov]
                rows[prov] = {
                    "true": true,
                    "max_rate": c["max_rate"],
                    "first_bad_rate": c["first_bad_rate"],
                    "bracket_holds_true": bool(
                        c["max_rate"] <= true * 1.05 and (c["first_bad_rate"] or float("inf")) >= true * 0.95
                    ),
                    "max_rate_error_pct": round(100 * (c["max_rate"] - true) / true, 1),
                    "peak_achieved_rate": round(c["peak_achieved_rate"], 2),
                    "peak_error_pct": round(100 * (c["peak_achieved_rate"] - true) / true, 1),
                    "steps": c["steps"],
                }
            out[name] = {"seconds": res["seconds"], "providers": rows}
        return out
    finally:
        for s in servers.values():
            s.stop()


def client_ceiling(tmp: Path, step_s: float, quick: bool) -> dict:
    server = Server(4096, 50)
    try:
        db = tmp / "ceil.duckdb"
        write_exchanges(db, real_chat_rows(32))
        pf = tmp / "ceil.toml"
        pf.write_text(server.table("wide"))
        rates = [50, 100, 200, 400] if quick else [50, 100, 200, 400, 600, 800]
        res = _sweep(db, pf, "ceiling", "--sweep", ",".join(map(str, rates)), "--step-seconds", str(step_s))
        steps = []
        for r in sorted(res["sweep"], key=lambda r: r["step"]):
            steps.append(
                {
                    "rate": r["load"],
                    "offered": r["offered_rate"],
                    "achieved": round(r["achieved_rate"] or 0, 1),
                    "lag_p99_ms": r["schedule_lag_p99_ms"],
                    "client_bound": r["client_bound"],
                    "e2e_p50_ms": r["e2e_p50_ms"],
                }
            )
        ok = [s["rate"] for s in steps if not s["client_bound"]]
        return {"steps": steps, "highest_rate_not_client_bound": max(ok) if ok else None}
    finally:
        server.stop()


def main_bench() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    step_s = 4.0 if a.quick else 8.0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {
            "estimate": estimate_error(tmp, step_s, a.quick),
            "client": client_ceiling(tmp, 3.0 if a.quick else 5.0, a.quick),
        }
    est = result["estimate"]
    print(f"capacity estimate (steps of {est['step_seconds']:g} s, rates {est['rates']}):")
    for mode in ("fixed", "auto"):
        print(f"  {mode} sweep ({est[mode]['seconds']:g} s):")
        for prov, r in est[mode]["providers"].items():
            print(
                f"    {prov:<5} true {r['true']:>5.1f}/s  max_rate {r['max_rate']:>6.2f} ({r['max_rate_error_pct']:+.1f}%)  "
                f"first bad {r['first_bad_rate'] if r['first_bad_rate'] is not None else '-'}  "
                f"bracket holds: {r['bracket_holds_true']}  peak achieved {r['peak_achieved_rate']:.2f} "
                f"({r['peak_error_pct']:+.1f}%)  steps {r['steps']}"
            )
    cl = result["client"]
    print("client ceiling (one provider that never queues, 50 ms a request):")
    for s in cl["steps"]:
        print(
            f"  {s['rate']:>5g}/s offered {s['offered']:>6.1f} achieved {s['achieved']:>6.1f}  lag p99 "
            f"{s['lag_p99_ms'] or 0:>6.1f} ms  e2e p50 {s['e2e_p50_ms'] or 0:>5.0f} ms  "
            f"{'CLIENT-BOUND' if s['client_bound'] else ''}"
        )
    print(f"  highest rate the client kept: {cl['highest_rate_not_client_bound']}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main_bench()
