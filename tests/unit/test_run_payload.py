"""How a run travels: fetched from PostHog one JSON text per cluster, and kept in the store as a digest
that the next run of the job diffs against (payloads written before the digest are still read)."""

from __future__ import annotations

import json
import sqlite3
import zlib
from pathlib import Path

import msgspec

from monitor.matching import match_runs
from monitor.runs import DIGEST_FORMAT, Run, decode_stored_run, encode_digest, run_from_properties
from monitor.store.base import ProcessedRun
from monitor.store.sqlite import SQLiteStore
from tests.support.payloads import run_props


def _runs() -> tuple[Run, Run]:
    pool = [f"t{i}" for i in range(600)]
    prev = run_from_properties(run_props(0, pool[:400], False))
    new = run_from_properties(run_props(1, pool[200:], True))
    return prev, new


def test_the_digest_keeps_everything_the_diff_reads() -> None:
    prev, new = _runs()
    digest = encode_digest(prev)
    back = decode_stored_run(digest)
    assert json.loads(digest)["format"] == DIGEST_FORMAT
    assert [(c.cluster_id, c.size, c.title, c.description, list(c.traces)) for c in back.clusters] == [
        (c.cluster_id, c.size, c.title, c.description, list(c.traces)) for c in prev.clusters]
    assert (back.run_id, back.job_key, back.window_end, back.total_items) == (
        prev.run_id, prev.job_key, prev.window_end, prev.total_items)
    assert match_runs(back, new, explain=True) == match_runs(prev, new, explain=True)
    # Only the keys of the items: a fraction of the whole run encoded.
    assert len(digest) < len(msgspec.json.encode(prev)) / 2


def test_payloads_written_before_the_digest_are_still_read(tmp_path: Path) -> None:
    prev, new = _runs()
    store = SQLiteStore(tmp_path / "state.sqlite")
    store.commit_run(ProcessedRun(
        run_id=prev.run_id, job_key="j|trace", level="trace", window_end=prev.window_end,
        emitted_at=prev.window_end, event_uuid="u0", payload=encode_digest(prev), snapshots=[], alert_states=[],
        outbox=[], processed_at=prev.window_end))
    rec = store.previous_run("j|trace", before=new.window_end)
    assert rec is not None and decode_stored_run(rec[1]).clusters[0].traces.keys() == prev.clusters[0].traces.keys()
    store.close()
    # What an older version wrote: the whole run encoded, zlib-compressed.
    with sqlite3.connect(tmp_path / "state.sqlite") as conn:
        conn.execute("UPDATE runs SET payload = ? WHERE run_id = ?",
                     (zlib.compress(msgspec.json.encode(prev), 1), prev.run_id))
    store = SQLiteStore(tmp_path / "state.sqlite")
    rec = store.previous_run("j|trace", before=new.window_end)
    assert rec is not None
    old = decode_stored_run(rec[1])
    assert old == prev  # the full run, items with their ranks and trace ids
    assert match_runs(old, new) == match_runs(decode_stored_run(encode_digest(prev)), new)
    store.close()


