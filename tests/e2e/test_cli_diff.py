"""`cluster-monitor diff` as a user runs it: a new process, two files, JSON or text on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.local.posthog.generator import make_run_event

END = datetime(2026, 11, 1, 3, tzinfo=UTC)
JOB = "019cb7f3-a126-7809-bffc-7f13bffe1325"


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def _props(clusters: list[dict[str, Any]], day: int) -> dict[str, Any]:
    return make_run_event(team_id=2, level="trace", window_end=END + timedelta(days=day), clusters=clusters,
                          job_id=JOB, job_name="Default")


def _runs() -> tuple[dict[str, Any], dict[str, Any]]:
    auth, code, sql, old = _ids("auth", 60), _ids("code", 40), _ids("sql", 30), _ids("old", 20)
    prev = _props([
        {"cluster_id": 0, "items": auth, "title": "User authentication flows",
         "description": "Users logging in, signing up and refreshing sessions."},
        {"cluster_id": 1, "items": code, "title": "Python code generation",
         "description": "Requests to write new Python functions."},
        {"cluster_id": 2, "items": old, "title": "Weather small talk",
         "description": "Casual questions about the weather."},
        {"cluster_id": -1, "items": _ids("noise", 10)},
    ], 0)
    new = _props([
        # The same traffic, reworded by the LLM and renumbered; half of the items sampled again.
        {"cluster_id": 0, "items": code[20:] + _ids("code2", 25), "title": "Writing new Python functions",
         "description": "Asks to generate Python code for a task."},
        {"cluster_id": 1, "items": auth[30:] + _ids("auth2", 35),
         "title": "Login, sign-up and session refresh requests",
         "description": "Authentication: logging in, creating accounts, refreshing tokens."},
        {"cluster_id": 2, "items": sql, "title": "SQL query generation", "description": "Questions turned into SQL."},
        {"cluster_id": -1, "items": _ids("noise2", 12)},
    ], 1)
    return prev, new


def _files(tmp_path: Path, prev: dict[str, Any], new: dict[str, Any]) -> tuple[Path, Path]:
    a, b = tmp_path / "prev.json", tmp_path / "new.json"
    a.write_text(json.dumps(prev))
    b.write_text(json.dumps(new))
    return a, b


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor.cli", "diff", *args], capture_output=True, text=True,
                          timeout=60)


def test_diff_json_links_reworded_clusters_and_names_new_and_disappeared(tmp_path: Path) -> None:
    prev, new = _runs()
    a, b = _files(tmp_path, prev, new)
    out = _cli(str(a), str(b), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["prev_run_id"] == prev["$ai_clustering_run_id"] and doc["new_run_id"] == new["$ai_clustering_run_id"]
    pairs = {(m["prev"], m["new"]) for m in doc["matches"]}
    assert pairs == {(0, 1), (1, 0)}
    assert doc["new"] == [2] and doc["disappeared"] == [2]
    assert doc["splits"] == [] and doc["merges"] == []
    m = next(m for m in doc["matches"] if m["prev"] == 0)
    assert 0.5 <= m["score"] <= 1.0
    assert (m["prev_size"], m["new_size"]) == (60, 65)
    assert abs(m["share_delta_pp"] - (m["new_share"] - m["prev_share"]) * 100) < 1e-9


def test_diff_reads_clusters_stored_as_a_json_string_and_whole_events(tmp_path: Path) -> None:
    prev, new = _runs()
    a, b = _files(tmp_path, prev, new)
    expected = json.loads(_cli(str(a), str(b), "--json").stdout)
    # HogQL's JSONExtractRaw hands `$ai_clusters` over as a string; an event export wraps properties.
    as_string = dict(prev, **{"$ai_clusters": json.dumps(prev["$ai_clusters"])})
    a.write_text(json.dumps(as_string))
    b.write_text(json.dumps({"event": "$ai_trace_clusters", "timestamp": "2026-11-02T03:05:00Z", "properties": new}))
    out = _cli(str(a), str(b), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == expected


def test_diff_explain_prints_the_signals(tmp_path: Path) -> None:
    prev, new = _runs()
    a, b = _files(tmp_path, prev, new)
    out = _cli(str(a), str(b), "--explain")
    assert out.returncode == 0, out.stderr
    assert "User authentication flows" in out.stdout and "Login, sign-up" in out.stdout
    assert "items" in out.stdout and "title" in out.stdout


def test_a_bad_payload_names_the_run_and_the_field(tmp_path: Path) -> None:
    prev, new = _runs()
    new["$ai_clusters"][0]["size"] = "many"
    a, b = _files(tmp_path, prev, new)
    out = _cli(str(a), str(b), "--json")
    assert out.returncode == 2
    assert new["$ai_clustering_run_id"] in out.stderr and "$ai_clusters" in out.stderr
    b.write_text("{not json")
    out = _cli(str(a), str(b))
    assert out.returncode == 2 and "expected a JSON object" in out.stderr


def test_diff_with_embeddings_rows_links_a_heavy_rewording_that_shares_no_item(tmp_path: Path) -> None:
    """`--embeddings ROWS.jsonl` (issue 15): the rows as raw_document_embeddings returns them."""
    from monitor.runs import run_from_properties
    from tests.support.matching.build import build_properties, load_cases
    from tests.support.matching.embed import item_embeddings

    case = next(c for c in load_cases() if c.name == "heavy_paraphrase_travel_text_only")
    pp, nn = build_properties(case)
    a, b = _files(tmp_path, pp, nn)
    rows = tmp_path / "rows.jsonl"
    items = item_embeddings(case, run_from_properties(pp), run_from_properties(nn))
    rows.write_text("".join(json.dumps({"document_id": k, "embedding": v}) + "\n" for k, v in items.items()))
    lexical = json.loads(_cli(str(a), str(b), "--json").stdout)
    done = _cli(str(a), str(b), "--json", "--embeddings", str(rows))
    assert done.returncode == 0, done.stderr
    with_rows = json.loads(done.stdout)
    truth = sorted(list(x) for x in case.truth.links)
    assert sorted([m["prev"], m["new"]] for m in with_rows["matches"]) == truth
    assert with_rows["new"] == [] and with_rows["disappeared"] == []
    assert lexical["new"] or lexical["disappeared"], "the words alone miss at least one rewording here"
    rows.write_text('{"document_id": "x", "embedding": [0.1, 0.2]}\n{"document_id": 3, "embedding": []}\n')
    bad = _cli(str(a), str(b), "--embeddings", str(rows))
    assert bad.returncode == 2 and f"{rows}:2: document_id" in bad.stderr
