"""Issue 16's crafted run payloads, each in a job of its own between two well-formed runs of that job, landed on
the local PostHog as run events (the same rows PostHog's clustering writes; see monitor/local/posthog/generator).
Used in process (tests/integration/test_poison_runs.py) and through the daemon process
(tests/e2e/test_hostile_runs.py).

Each case is either malformed (the run cannot be read as PostHog writes runs: it is quarantined, with one alert)
or merely odd (processed, with the handling README.md "Poison runs" describes).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from monitor.local.posthog.generator import make_run_event, run_event_row
from monitor.local.posthog.server import LocalPostHog

# A size PostHog never writes: its JSON text is put in the event after encoding (msgspec cannot encode it).
HUGE = "1" + "0" * 30
_HUGE_MARK = 987654321123


@dataclass(frozen=True)
class Case:
    name: str
    malformed: bool
    # The field a quarantine alert must name (malformed cases), as the run parser names it.
    field: str
    # What the crafted run's text must show (part of the parser's message), for malformed cases.
    problem: str
    edit: Callable[[dict[str, Any]], None]


def _clusters(props: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = props["$ai_clusters"]
    return out


def _long_title(p: dict[str, Any]) -> None:
    _clusters(p)[0]["title"] = "Refund requests " + "x" * 100_000


def _number_title(p: dict[str, Any]) -> None:
    _clusters(p)[0]["title"] = 12345


def _duplicate_ids(p: dict[str, Any]) -> None:
    _clusters(p)[1]["cluster_id"] = _clusters(p)[0]["cluster_id"]


def _nan_cost(p: dict[str, Any]) -> None:
    _clusters(p)[0]["metrics"] = {"avg_cost": "NaN", "item_count": 3}


def _huge_size(p: dict[str, Any]) -> None:
    _clusters(p)[0]["size"] = _HUGE_MARK


def _nothing(p: dict[str, Any]) -> None:
    return None


CASES: tuple[Case, ...] = (
    Case("long_title", False, "", "", _long_title),
    Case("number_title", True, "$ai_clusters", ".title", _number_title),
    Case("duplicate_ids", True, "$ai_clusters", "appears twice", _duplicate_ids),
    Case("nan_avg_cost", False, "", "", _nan_cost),
    Case("huge_size", True, "$ai_clusters", ".size", _huge_size),
    # The job id is in the run id (PostHog's `<team>_<level>_<window end>_<job id>`): quotes land in both.
    Case("quotes_in_run_id", False, "", "", _nothing),
)


@dataclass(frozen=True)
class Landed:
    case: Case
    job_id: str
    good: tuple[str, str]  # the runs before and after the crafted one
    crafted: str


def job_id_for(case: Case) -> str:
    base = f"00000000-0000-0000-0000-{zlib.crc32(case.name.encode()):012d}"
    return base + "-it's \"quoted\"" if case.name == "quotes_in_run_id" else base


def land(server: LocalPostHog, team_id: int, end: datetime) -> list[Landed]:
    """Every case's three runs (days -2, -1 crafted, 0 before `end`), emitted 5 minutes after their window."""
    out: list[Landed] = []
    rows = []
    for case in CASES:
        job = job_id_for(case)
        ids: list[str] = []
        for day in (2, 1, 0):
            items = [f"{case.name}-{day}-t{i}" for i in range(60)]
            props = make_run_event(
                team_id=team_id, level="trace", window_end=end - timedelta(days=day), job_id=job,
                job_name=f"Hostile {case.name}", max_samples=len(items),
                clusters=[{"cluster_id": 0, "items": items[:30], "title": "Refund requests"},
                          {"cluster_id": 1, "items": items[30:50], "title": "SQL writing"},
                          {"cluster_id": -1, "items": items[50:]}])
            if day == 1:
                case.edit(props)
            row = run_event_row(props, team_id=team_id, emitted_at=end - timedelta(days=day, minutes=-5))
            if day == 1 and case.name == "huge_size":
                doc = msgspec.json.decode(row[3])
                text = msgspec.json.encode(doc).decode().replace(str(_HUGE_MARK), HUGE)
                row = (row[0], row[1], row[2], text, row[4], row[5])
            rows.append(row)
            ids.append(str(props["$ai_clustering_run_id"]))
        out.append(Landed(case, job, (ids[0], ids[2]), ids[1]))
    server.engine.insert(rows)
    return out
