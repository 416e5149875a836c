"""Every read of the store API over a state, as plain JSON values: what the code of the day returns.

tests/data/state_v1_expected.json is this over tests/data/state_v1.sqlite, taken with the store of main
before the schema was versioned (see tests/data/state_v1.md); the migration tests compare the upgraded
state's answers with it, so an upgrade that loses or changes anything fails.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FAR = datetime(2100, 1, 1, tzinfo=UTC)
DATA = Path(__file__).parents[1] / "data"
V1 = DATA / "state_v1.sqlite"


def expected_v1() -> dict[str, Any]:
    """Every read over V1 as the store of its day answered it."""
    doc: dict[str, Any] = json.loads((DATA / "state_v1_expected.json").read_text())
    return doc


def plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, bytes):
        return "sha256:" + hashlib.sha256(v).hexdigest()
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, set):
        return [plain(x) for x in sorted(v)]
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if is_dataclass(v) and not isinstance(v, type):
        return plain(asdict(v))
    return v


def every_read(store: Any, rows: dict[str, list[str]]) -> dict[str, Any]:
    """`rows`: the run ids, job keys, alert job keys, lineage ids, kv keys and fingerprints to ask about."""
    fps = [*rows["fingerprints"], "fixturefp"]
    out: dict[str, Any] = {
        "processed_ids": store.processed_ids([*rows["run_ids"], "nope"]),
        "runs": {rid: {"is_processed": store.is_processed(rid), "lineages": store.lineages(rid),
                       "run_snapshots": store.run_snapshots(rid)} for rid in rows["run_ids"]},
        "previous_run": {job: store.previous_run(job, FAR) for job in rows["jobs"]},
        "lineage_history": {job: store.lineage_history(job, FAR, 3) for job in rows["jobs"]},
        "history": {lid: store.history(lid, 3) for lid in rows["lineages"][:10]},
        "find_lineages": {q: store.find_lineages(q) for q in ("", "a", "e")},
        "alert_states": {job: store.alert_states(job) for job in rows["alert_jobs"]},
        "last_runs": store.last_runs(),
        "cursor": store.cursor(),
        "kv": {k: store.kv_get(k) for k in rows["kv_keys"]},
        "outbox": store.outbox(),
        "outbox_by_status": {s: [e.id for e in store.outbox(s)] for s in ("pending", "sent", "failed")},
        "due_outbox": [e.id for e in store.due_outbox(FAR)],
        "silences": store.silences(),
        "thread_for": {ch: store.thread_for(ch, fps) for ch in ("slack", "email")},
    }
    return {"rows": rows, **plain(out)}


def what_to_ask(sqlite_path: str) -> dict[str, list[str]]:
    """The keys to ask about, read straight from a state file with sqlite3 (not through the store)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{sqlite_path}?mode=ro&immutable=1", uri=True)
    try:
        def col(q: str) -> list[str]:
            return [str(r[0]) for r in conn.execute(q)]

        return {
            "run_ids": col("SELECT run_id FROM runs ORDER BY run_id"),
            "jobs": col("SELECT DISTINCT job_key FROM runs ORDER BY job_key"),
            "alert_jobs": col("SELECT DISTINCT job_key FROM alert_state ORDER BY job_key"),
            "lineages": col("SELECT DISTINCT lineage_id FROM clusters ORDER BY lineage_id"),
            "kv_keys": col("SELECT key FROM kv ORDER BY key"),
            "fingerprints": col("SELECT fingerprint FROM alert_state ORDER BY fingerprint"),
        }
    finally:
        conn.close()
