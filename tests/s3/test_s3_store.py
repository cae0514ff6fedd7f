"""The store in a bucket (``s3://bucket/prefix``) against a real S3-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("moto", reason="moto (a dev dependency) provides the S3-compatible server")

from s3kit import ACCESS_KEY, SECRET_KEY, local_parquet  # noqa: E402

from parity.store import objstore  # noqa: E402
from parity.store.export import compact_store, export_parquet  # noqa: E402
from parity.store.format import MANIFEST, STORE_FORMAT  # noqa: E402
from parity.store.segments import (  # noqa: E402
    _merge_duckdb,
    list_segments,
    segment_root,
    store_salt,
    write_segment,
)
from parity.store.store import (  # noqa: E402
    NoStoreError,
    StoreFormatError,
    connect,
    init_catalog,
    live_files,
)
from parity.store.writer import BatchWriter  # noqa: E402

pytestmark = pytest.mark.e2e  # starts a server: make test-fast skips it
REPO = Path(__file__).resolve().parents[2]


def rows(prefix: str, n: int) -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "id": f"{prefix}{i}",
            "recorded_at": now,
            "endpoint": "chat.completions",
            "model": "m",
            "status": 200,
        }
        for i in range(n)
    ]


def count(db: str, table: str = "exchanges") -> tuple[int, int]:
    con = connect(db)
    try:
        return con.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchall()[0]
    finally:
        con.close()


def spilled(spill: Path) -> list[Path]:
    return [p for p in local_parquet(spill) if p.name.startswith("seg-")]


@pytest.fixture(autouse=True)
def local_state(tmp_path: Path, monkeypatch) -> Path:
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


def test_a_bucket_store_is_stamped_by_its_first_writer_and_read_where_it_lies(s3, store_url, tmp_path):
    assert init_catalog(store_url) == []  # no catalog in a bucket
    root = segment_root(store_url)
    for k in range(3):
        write_segment(root, "exchanges", rows(f"s{k}-", 4), "w")
    bucket, prefix = root.bucket, root.key
    keys = s3.keys(bucket, prefix)
    assert f"{prefix}/{MANIFEST}" in keys
    assert json.loads(objstore.get(root / MANIFEST))["format"] == STORE_FORMAT
    assert sum(k.startswith(f"{prefix}/exchanges/seg-") for k in keys) == 3
    assert count(store_url) == (12, 12)
    con = connect(store_url)
    assert [r[0] for r in con.execute("DESCRIBE results").fetchall()][:3] == [
        "run_id",
        "exchange_id",
        "provider",
    ]
    assert con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]
    assert local_parquet(tmp_path, REPO / "s3:") == []  # nothing local, nothing in a folder named s3:


def test_segment_names_carry_host_process_and_sequence(s3, store_url):
    root = segment_root(store_url)
    a = write_segment(root, "exchanges", rows("a", 1), "rec1")
    b = write_segment(root, "exchanges", rows("b", 1), "rec1")
    tag = objstore.writer_tag()
    assert a.name != b.name and tag in a.name and tag in b.name
    assert int(a.name.rsplit("-", 1)[1].split(".")[0]) < int(b.name.rsplit("-", 1)[1].split(".")[0])


def test_two_writers_agree_on_one_salt(s3, store_url):
    root = segment_root(store_url)
    assert store_salt(root) == store_salt(segment_root(store_url)) and len(store_salt(root)) == 16


def test_a_missing_store_a_foreign_format_and_a_url_with_credentials_are_refused(s3, store_url):
    with pytest.raises(NoStoreError, match=f"no store at {store_url}"):
        connect(store_url)
    root = segment_root(store_url)
    write_segment(root, "exchanges", rows("x", 1), "w")
    objstore.put(root / MANIFEST, json.dumps({"format": STORE_FORMAT + 1}).encode())
    with pytest.raises(StoreFormatError, match="newer parity"):
        connect(store_url)
    out = subprocess.run(
        [sys.executable, "-m", "parity.cli", "ls", "--db", f"s3://{ACCESS_KEY}:{SECRET_KEY}@bucket/p"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "credentials do not go in the s3:// URL" in out.stderr
    assert SECRET_KEY not in out.stderr


def test_compaction_in_a_bucket_counts_each_row_once_before_during_and_after(s3, store_url):
    root = segment_root(store_url)
    for k in range(5):
        write_segment(root, "exchanges", rows(f"c{k}-", 3), "w")
    before = connect(store_url)  # listed before the merge
    assert compact_store(store_url, min_age_s=0)["exchanges"] == (5, 15)
    write_segment(root, "exchanges", rows("late", 1), "w")
    assert before.execute("SELECT count(*), count(DISTINCT id) FROM exchanges").fetchall() == [(15, 15)]
    assert count(store_url) == (16, 16)  # the merge plus the late segment, the sources hidden
    live = live_files(store_url, "exchanges")
    assert len(live) == 2 and all(f.startswith(f"{store_url}/exchanges/") for f in live)
    names = [k.rsplit("/", 1)[1] for k in s3.keys(root.bucket, f"{root.key}/exchanges/")]
    assert sum(n.startswith("seg-") for n in names) == 6  # sources kept for the grace period
    compact_store(store_url, min_age_s=3600, grace_s=0)  # grace over: the sources go
    names = [k.rsplit("/", 1)[1] for k in s3.keys(root.bucket, f"{root.key}/exchanges/")]
    assert sum(n.startswith("seg-") for n in names) == 1 and sum(n.startswith("cmp-") for n in names) == 1
    assert count(store_url) == (16, 16)
    before.close()


def test_two_hosts_compacting_at_once_never_double_a_row(s3, store_url):
    """No lock spans hosts: two merges of the same segments may both land. Readers take the first
    (by name) and hide the other; the next compaction deletes the loser."""
    root = segment_root(store_url)
    for k in range(4):
        write_segment(root, "exchanges", rows(f"r{k}-", 5), "w")
    segs = list_segments(root, "exchanges")
    d = root / "exchanges"
    assert _merge_duckdb(segs, "exchanges", d / "cmp--20000101T000000000000-hostA-000001.parquet") == 20
    assert _merge_duckdb(segs[1:], "exchanges", d / "cmp--20000101T000000000001-hostB-000001.parquet") == 15
    assert count(store_url) == (20, 20)
    compact_store(store_url, min_age_s=3600, grace_s=0)
    names = [k.rsplit("/", 1)[1] for k in s3.keys(root.bucket, f"{root.key}/exchanges/")]
    assert names == ["cmp--20000101T000000000000-hostA-000001.parquet"]
    assert count(store_url) == (20, 20)


def test_a_failed_upload_spills_locally_and_is_uploaded_again_once(s3, store_url, tmp_path):
    spill = tmp_path / "spill"
    w = BatchWriter(segment_root(store_url), spill_dir=spill, retry_interval=0.0)
    w.start(background=False)
    for r in rows("ok", 3):
        w.put("exchanges", r)
    w.flush()
    s3.stop()
    try:
        for r in rows("down", 4):
            w.put("exchanges", r)
        w.flush()
        assert w.stats.spilled == 4 and w.stats.lost == 0
        assert len(spilled(spill)) == 1
        assert SECRET_KEY not in (w.stats.last_error or "") and ACCESS_KEY not in (w.stats.last_error or "")
        w.flush()  # the bucket still down: the spill stays
        assert len(spilled(spill)) == 1
    finally:
        s3.start()
    w.flush()  # retries the spill
    stats = w.close()
    assert (stats.written, stats.spilled, stats.reimported, stats.lost) == (3, 4, 4, 0)
    assert spilled(spill) == []
    assert count(store_url) == (7, 7)


def test_a_bucket_that_cannot_be_reached_is_one_clear_line_without_credentials(s3, store_url):
    write_segment(segment_root(store_url), "exchanges", rows("x", 1), "w")
    s3.stop()
    try:
        with pytest.raises(NoStoreError) as e:
            connect(store_url)
    finally:
        s3.start()
    msg = str(e.value)
    assert store_url.split("/")[2] in msg and "EndpointConnectionError" in msg
    assert SECRET_KEY not in msg and ACCESS_KEY not in msg


def test_export_to_a_bucket_is_partitioned_by_table_and_day(s3, store_url, tmp_path):
    root = segment_root(store_url)
    write_segment(root, "exchanges", rows("e", 6), "w")
    out = f"s3://{root.bucket}/export"
    assert export_parquet(store_url, out)["exchanges"] == 6
    keys = s3.keys(root.bucket, "export/")
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    assert any(k.startswith(f"export/exchanges/day={day}/endpoint=chat.completions/") for k in keys), keys
    con = duckdb.connect()
    objstore.register(con)
    got = con.execute(
        f"SELECT count(*), any_value(CAST(day AS VARCHAR)) FROM read_parquet('{out}/exchanges/**/*.parquet', hive_partitioning=true)"
    ).fetchall()
    assert got == [(6, day)]
    assert local_parquet(tmp_path) == []


def test_a_bucket_table_as_a_polars_frame_is_its_view(s3, store_url):
    """evals reads the cells through parity.store.frames.scan: in a bucket too, the view's rows."""
    import polars as pl

    from parity.store.frames import scan

    root = segment_root(store_url)
    results = [
        {"run_id": "r1", "exchange_id": f"x{i}", "provider": "recorded", "repeat": 0, "status": 200}
        for i in range(6)
    ]
    write_segment(root, "results", results[:3], "w")
    write_segment(root, "results", results[3:], "w")
    got = scan(store_url, "results").collect()
    con = connect(store_url)
    try:
        want = con.execute("SELECT exchange_id, status FROM results ORDER BY exchange_id").fetchall()
    finally:
        con.close()
    assert got.sort("exchange_id").select("exchange_id", "status").rows() == want
    assert got.schema["status"] == pl.Int32
