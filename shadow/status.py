"""What a shadow run has done so far: the counters stored in its ``run_events`` config under ``"shadow"``.

``parity ls`` reads them from the store (the recorder never imports this module); a restart reads
the latest ones back and keeps counting from there. Reasons are short keys: ``queue_full`` (the
proxy's hand-off queue was full), ``<provider>: concurrency|rpm|tpm`` (that provider's limit was
reached), ``max_cost`` (the spend cap), ``<provider>: lost_in_flight`` (sent when the recorder or the
shadow process stopped, never answered: after a crash, ``mirrored`` is recounted as stored + lost).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

# run_events states a shadow run writes (runs.state is the latest)
STARTED, RESUMED, MIRRORING, CAPPED, STOPPED = "started", "resumed", "mirroring", "capped", "stopped"


@dataclass
class Counters:
    """A shadow run's totals across every start of it."""

    seen: int = 0  # replayable requests the proxy saw (before sampling)
    sampled: int = 0  # of which the sample kept
    received: int = 0  # handed to the shadow process
    mirrored: dict[str, int] = field(default_factory=dict)  # requests sent, per provider
    ok: dict[str, int] = field(default_factory=dict)  # 2xx answers, per provider
    failed: dict[str, int] = field(default_factory=dict)  # failed cells, per provider
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> mirrors not sent (or lost)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> never mirrored by design
    spent_usd: float = 0.0
    state: str = STARTED
    sample: float = 1.0
    max_cost: float | None = None
    updated_at: str = ""

    def add(self, bucket: str, key: str, n: int = 1) -> None:
        """Count ``n`` under ``bucket[key]`` (bucket: mirrored, ok, failed, dropped, skipped)."""
        d: dict[str, int] = getattr(self, bucket)
        d[key] = d.get(key, 0) + n

    def public(self) -> dict:
        """The JSON stored in the run's config."""
        self.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
        out = asdict(self)
        out["spent_usd"] = round(self.spent_usd, 6)
        return out

    @classmethod
    def from_public(cls, d: dict | None) -> Counters:
        """Counters read back from a stored config (unknown keys ignored)."""
        c = cls()
        for k, v in (d or {}).items():
            if hasattr(c, k) and v is not None:
                setattr(c, k, dict(v) if isinstance(v, dict) else v)
        return c


def short_reason(reason: str) -> str:
    """A skip reason without its per-request details (``side effects (POST /files)`` -> ``side effects``)."""
    return reason.split(" (", 1)[0]
