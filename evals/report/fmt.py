"""How the report writes numbers: durations, percentages, rates, dollars and any summary figure."""

from __future__ import annotations

import math


def known(v: object) -> bool:
    return v is not None and not (isinstance(v, float) and not math.isfinite(v))


def fmt_ms(v: float | None, sign: bool = False) -> str:
    """1234.5 -> "1,235 ms", 8.25 -> "8.2 ms"; with ``sign`` a leading +/−."""
    if not known(v):
        return "—"
    s = f"{abs(v):,.0f}" if abs(v) >= 20 else f"{abs(v):.1f}" if abs(v) >= 1 else f"{abs(v):.2f}"
    return f"{_sign(v, sign)}{s} ms"


def _sign(v: float, sign: bool) -> str:
    if v < 0:
        return "−"
    return "+" if sign and v > 0 else ""


def fmt_pct(v: float | None, sign: bool = True, digits: int = 0) -> str:
    """A percentage figure (already x100): 34.2 -> "+34%"."""
    if not known(v):
        return "—"
    d = digits if abs(v) >= 10 or digits else 1
    return f"{_sign(v, sign)}{abs(v):.{d}f}%"


def fmt_rate(v: float | None) -> str:
    """A share 0..1 as a percentage: 0.031 -> "3.1%"."""
    if not known(v):
        return "—"
    p = v * 100
    return f"{p:.0f}%" if p >= 10 or p == 0 else f"{p:.1f}%" if p >= 0.1 else f"{p:.2f}%"


def fmt_usd(v: float | None) -> str:
    """Dollars with cents for big amounts and significant digits for small ones."""
    if not known(v):
        return "—"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:,.2f}"
    if abs(v) >= 0.1:
        return f"${v:.2f}"  # $0.40, not $0.4: cents line up in a column
    return f"${v:.2g}" if v else "$0"


def fmt_num(v: float | None, digits: int = 2) -> str:
    if not known(v):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}" if abs(v) >= 1 or v == 0 else f"{v:.{digits}g}"


def fmt_figure(name: str, v: object) -> str:
    """Any summary figure, formatted by its name's unit."""
    if not known(v):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if name.endswith("_pct"):
        return fmt_pct(v, digits=1)
    if name.endswith("_ms") or "_ms_ci" in name or name.endswith("_delta_ms"):
        return fmt_ms(v, sign="delta" in name or "diff" in name)
    if name.endswith("_usd"):
        return fmt_usd(v)
    if name.endswith(("_rate", "_share", "_agreement")) or "_rate_ci" in name or name.startswith("rate_"):
        return fmt_rate(v)
    if name.endswith("_tokens"):
        return f"{v:,.0f}"
    if name.startswith("output_tps"):
        return f"{v:,.1f} tok/s"
    if name.endswith(("_p_value", "_p_adjusted")):
        return fmt_p(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.2f}"


def fmt_ci(
    lo: float | None, hi: float | None, f, unit: str = "", reason: str | None = None, kind: str = ""
) -> str:
    """``kind`` says which interval ("family-wise ", "unadjusted "); ``reason`` why a bound is missing."""
    if not known(lo) or not known(hi):
        return f"no {kind}CI: {reason}" if reason else f"no {kind}CI: the sample cannot bound it"
    return f"{kind}CI {f(lo)} … {f(hi)}{unit}"


def ms_number(v: float) -> str:
    """A signed millisecond amount without its unit (for CIs)."""
    return fmt_ms(v, sign=True).removesuffix(" ms")


def fmt_p(p: float | None) -> str:
    """The one p-value notation of the terminal, the report and the comment: "p=0.034", "p<0.001"."""
    if not known(p):
        return "—"
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"
