"""The cycle's stages as plain functions over plain values: no server, no subprocess, no store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from monitor.alerts import Alert
from monitor.config import Inhibit, Route, Silence, WatchConfig
from monitor.links import PostHogLinks
from monitor.local.posthog.generator import make_run_event
from monitor.metrics import ClusterMetrics
from monitor.notify.catchup import HELD_PREFIX
from monitor.posthog.client import PostHogError
from monitor.runs import RunParseError, run_from_properties
from monitor.stages import checks, cursor, decide, discover, enqueue, evaluate, load, measure, route
from monitor.stages.diff import diff_run
from monitor.stages.discover import DiscoveredRun
from monitor.store.base import ClusterSnapshot, OutboxEntry

T0 = datetime(2026, 11, 1, 3, tzinfo=UTC)
JOB = "00000000-0000-0000-0000-0000000000aa"
LINKS = PostHogLinks("https://ph.test", 1)


def _props(day: int, titles: list[str], per: int = 20) -> dict[str, Any]:
    clusters: list[dict[str, Any]] = [
        {"cluster_id": c, "items": [f"t{c}-{i}" for i in range(per * (c + 1))], "title": t,
         "description": f"About {t.lower()}."} for c, t in enumerate(titles)]
    clusters.append({"cluster_id": -1, "items": [f"n{i}" for i in range(5)]})
    return make_run_event(team_id=1, level="trace", window_end=T0 + timedelta(days=day), clusters=clusters,
                          job_id=JOB, job_name="Stage job")


def _discovered(run_id: str = "r1", emitted: datetime = T0, level: str = "trace", job_id: str = JOB,
                job_name: str = "Stage job") -> DiscoveredRun:
    return DiscoveredRun(run_id=run_id, level=level, job_id=job_id, job_name=job_name, event="$ai_trace_clusters",
                         event_uuid="u", emitted_at=emitted, window_end=emitted)


def _row(props: dict[str, Any], **over: Any) -> dict[str, Any]:
    """A GET_RUN row as PostHog answers it: strings, raw JSON for numbers and objects, one text per cluster."""
    row = {"run_id": props["$ai_clustering_run_id"], "level": "trace", "job_id": JOB, "job_name": "Stage job",
           "window_start": props["$ai_window_start"], "window_end": props["$ai_window_end"],
           "total_items": msgspec.json.encode(props["$ai_total_items_analyzed"]).decode(),
           "clusters": [msgspec.json.encode(c).decode() for c in props["$ai_clusters"]], "clusters_type": "Array",
           "params": msgspec.json.encode(props["$ai_clustering_params"]).decode()}
    return row | over


def _alert(kind: str, severity: str = "warning", cluster_id: int | None = 0, value: float = 1.0,
           fp: str | None = None) -> Alert:
    return Alert(fingerprint=fp or f"fp-{kind}-{cluster_id}", rule=kind, kind=kind, severity=severity,
                 summary=kind, run_id="r1", job_name="", level="", cluster_id=cluster_id, value=value)


# --- discover ---------------------------------------------------------------------------------------------
def test_discovery_parses_a_row_and_names_the_run_of_a_bad_one() -> None:
    d = discover.discovered_from_row({"run_id": "r9", "level": "", "event": "$ai_trace_clusters", "job_id": "",
                                      "job_name": "legacy", "event_uuid": "u9", "emitted_at": "2026-11-01 03:00:00Z",
                                      "window_end": "2026-11-01T03:00:00+00:00"})
    assert (d.level, d.job_key, d.emitted_at) == ("trace", "name:legacy|trace", T0)
    with pytest.raises(RunParseError) as err:
        discover.discovered_from_row({"run_id": "r9", "emitted_at": "soon", "window_end": "x"})
    assert (err.value.run_id, err.value.field) == ("r9", "timestamp")
    # A time the monitor's query returns without its zone would be the project's wall clock: refused.
    with pytest.raises(RunParseError, match="no timezone offset"):
        discover.discovered_from_row({"run_id": "r9", "emitted_at": "2026-11-01 03:00:00",
                                      "window_end": "2026-11-01T03:00:00+00:00"})


def test_a_watched_level_without_an_enabled_job_is_named() -> None:
    jobs = [{"id": "a", "name": "Default - traces", "analysis_level": "trace", "enabled": True},
            {"id": "b", "name": "Default - generations", "analysis_level": "generation", "enabled": False},
            {"id": "c", "name": "Coding", "analysis_level": "generation", "enabled": True}]
    every = WatchConfig(levels=["trace", "generation", "evaluation"])
    assert discover.levels_without_job(every, jobs) == ["evaluation"]
    assert discover.levels_without_job(WatchConfig(levels=["trace", "generation"]), jobs) == []
    # Named jobs: only those count (the disabled one does not).
    assert discover.levels_without_job(WatchConfig(jobs=["Default - traces", "b"], levels=["trace", "generation"]),
                                       jobs) == ["generation"]
    assert discover.levels_without_job(WatchConfig(levels=["trace"]), []) == ["trace"]


def test_discovery_looks_back_behind_the_cursor_but_not_past_the_horizon() -> None:
    assert discover.discovery_bounds(T0, 7, None) == (T0 - timedelta(days=7),) * 2
    since, after = discover.discovery_bounds(T0, 7, T0 - timedelta(hours=1))
    assert after == T0 - timedelta(hours=1) - discover.INGESTION_GRACE and since == T0 - timedelta(days=7)
    assert discover.discovery_bounds(T0, 1, T0 - timedelta(days=3))[1] == T0 - timedelta(days=1)


def test_selection_keeps_watched_unprocessed_runs_in_the_window_oldest_first() -> None:
    runs = [_discovered("c", T0 + timedelta(hours=2)), _discovered("a", T0), _discovered("b", T0 + timedelta(hours=1)),
            _discovered("gen", T0, level="generation"), _discovered("late", T0 + timedelta(days=2))]
    asked: list[list[str]] = []

    def processed(ids: list[str]) -> set[str]:
        asked.append(ids)
        return {"b"}

    todo = discover.select_runs(runs, lambda d: d.level == "trace", (None, T0 + timedelta(days=1)), processed)
    assert [d.run_id for d in todo] == ["a", "c"]
    assert sorted(asked[0]) == ["a", "b", "c"]


def test_a_disabled_job_is_not_watched_and_an_unknown_job_is_looked_up_once_more() -> None:
    answers: list[list[dict[str, Any]]] = [[{"id": "j1", "enabled": False}],
                                           [{"id": "j1", "enabled": False}, {"id": "j2"}]]
    calls: list[int] = []

    def fetch() -> list[dict[str, Any]]:
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    jobs = discover.JobIndex(fetch, lambda: T0)
    watch = WatchConfig()
    assert not discover.is_watched(_discovered(job_id="j1"), watch, jobs)
    assert discover.is_watched(_discovered(job_id="j2"), watch, jobs)
    assert len(calls) == 2  # the second run named a job not seen: fetched again, once
    assert not discover.is_watched(_discovered(level="generation", job_id="j2"), WatchConfig(levels=["trace"]), jobs)
    named = WatchConfig(jobs=["Stage job"])
    assert discover.is_watched(_discovered(job_id="j1"), named, jobs)  # named in `watch.jobs`: taken as named


def test_the_job_index_keeps_its_last_answer_when_posthog_fails() -> None:
    ok = [True]

    def fetch() -> list[dict[str, Any]]:
        if not ok[0]:
            raise PostHogError("down", retryable=True)
        return [{"id": "j1"}]

    now = [T0]
    jobs = discover.JobIndex(fetch, lambda: now[0])
    assert jobs.get() == {"j1": {"id": "j1"}}
    ok[0] = False
    now[0] = T0 + timedelta(hours=2)
    assert jobs.get() == {"j1": {"id": "j1"}}


# --- load: one parser --------------------------------------------------------------------------------------
def test_a_run_row_parses_like_the_event_properties() -> None:
    props = _props(0, ["Refunds", "SQL"])
    d = _discovered(props["$ai_clustering_run_id"])
    run = load.run_from_row(_row(props), d)
    assert run == run_from_properties(props, d.emitted_at)
    # A quoted count (as some exports write it) is still a count.
    quoted = load.run_from_row(_row(props, total_items=f'"{props["$ai_total_items_analyzed"]}"'), d)
    assert quoted.total_items == run.total_items
    assert load.run_from_row(_row(props, params="", total_items=""), d).params == {}


@pytest.mark.parametrize(("over", "field"), [
    ({"params": "[1, 2]"}, "$ai_clustering_params"),
    ({"params": "{not json"}, "$ai_clustering_params"),
    ({"total_items": '"many"'}, "$ai_total_items_analyzed"),
    ({"window_start": ""}, "$ai_window_start"),
    ({"clusters_type": "Object"}, "$ai_clusters"),
])
def test_a_bad_run_row_raises_naming_the_run_and_the_field(over: dict[str, Any], field: str) -> None:
    props = _props(0, ["Refunds"])
    rid = props["$ai_clustering_run_id"]
    with pytest.raises(RunParseError) as err:
        load.run_from_row(_row(props, **over), _discovered(rid))
    assert err.value.field == field and err.value.run_id == rid and rid in str(err.value)


# --- diff, measure, evaluate -------------------------------------------------------------------------------
def test_lineages_start_with_the_run_and_carry_over_to_the_next() -> None:
    first = run_from_properties(_props(0, ["Refunds", "SQL queries"]))
    diff, lineages = diff_run(None, first, {}, threshold=0.5)
    assert diff is None
    assert sorted(lineages.values()) == [f"{first.run_id}#{n}" for n in range(3)]  # noise included
    second = run_from_properties(_props(1, ["Refunds", "SQL queries"]))
    diff2, lineages2 = diff_run(first, second, lineages, threshold=0.5)
    assert diff2 is not None and len(diff2.matches) == 2
    assert {lineages2[c] for c in (0, 1)} == {lineages[0], lineages[1]}


def test_stored_metrics_come_back_and_unreadable_run_metrics_count_as_none() -> None:
    m = ClusterMetrics(cluster_id=3, items=10, total_cost=2.5)
    snaps = [ClusterSnapshot(run_id="r", job_key="j", level="trace", window_end=T0, cluster_id=3, lineage_id="L",
                             title="t", size=10, share=1.0, metrics=m.as_dict()),
             ClusterSnapshot(run_id="r", job_key="j", level="trace", window_end=T0, cluster_id=4, lineage_id="M",
                             title="u", size=1, share=0.1, metrics={})]
    assert measure.stored_metrics(snaps) == {3: m}
    assert evaluate.decode_run_metrics('{"noise_share": 0.5}') == {"noise_share": 0.5}
    assert evaluate.decode_run_metrics("{broken") == {} == evaluate.decode_run_metrics("[1]") == \
        evaluate.decode_run_metrics(None)


# --- decide ------------------------------------------------------------------------------------------------
def test_decide_inhibits_then_silences_and_says_why() -> None:
    alerts = [_alert("mix_shift", cluster_id=None), _alert("share_shift", cluster_id=1),
              _alert("error_rate", severity="critical", cluster_id=2)]
    quiet = Silence(kinds=["error_rate"], comment="known incident")
    dec = decide.decide_run(alerts, {}, run_id="r1", job_key="j|trace", job_name="Stage job", level="trace",
                            now=T0, repeat_interval=timedelta(hours=24), present_lineages={},
                            inhibit=[Inhibit(when=["mix_shift"], suppress=["share_shift"])],
                            silences=lambda: [quiet])
    assert [a.kind for a in dec.notify] == ["mix_shift"]
    assert dec.notify[0].job_name == "Stage job" and dec.notify[0].level == "trace"
    assert [(a.kind, why) for a, why in dec.inhibited] == [("share_shift", "mix_shift")]
    assert [(a.kind, s.comment) for a, s in dec.silenced] == [("error_rate", "known incident")]
    assert len(dec.lifecycle.states) == 3  # muted alerts still have their state: they fired


def test_silences_are_read_only_when_something_is_left_to_tell() -> None:
    def never() -> list[Silence]:
        raise AssertionError("silences read for nothing")

    dec = decide.decide_check([], {}, check_id="c1", job_key="j", now=T0, repeat_interval=timedelta(hours=1),
                              silences=never)
    assert dec.notify == [] and dec.lifecycle.states == []


def test_a_stored_silence_that_no_longer_validates_is_reported_not_applied() -> None:
    silences, bad = decide.active_silences([Silence(kinds=["merge"])],
                                           [(1, {"kinds": ["split"]}), (2, {"severities": ["loud"]})])
    assert [s.kinds for s in silences] == [["merge"], ["split"]] and silences[1].comment == "silence #1"
    assert [sid for sid, _ in bad] == [2]


def test_alerts_are_told_most_important_first() -> None:
    alerts = [_alert("share_shift", value=0.1), _alert("new_cluster", value=0.2),
              _alert("error_rate", severity="critical", value=0.3), _alert("new_cluster", value=0.5, cluster_id=9)]
    ordered = sorted(alerts, key=decide.importance)
    assert [(a.kind, a.value) for a in ordered] == [("error_rate", 0.3), ("new_cluster", 0.5),
                                                    ("new_cluster", 0.2), ("share_shift", 0.1)]


# --- route and enqueue -------------------------------------------------------------------------------------
def test_routes_split_a_notification_into_outbox_rows_per_channel() -> None:
    run = run_from_properties(_props(0, ["Refunds", "SQL"]))
    alerts = [_alert("new_cluster", cluster_id=1), _alert("error_rate", severity="critical", cluster_id=0)]
    n = route.run_notification(run, None, None, alerts, metrics={}, prev_metrics={}, project_id=1, links=LINKS,
                               host="https://ph.test", now=T0)
    assert [a.kind for a in n.alerts] == ["error_rate", "new_cluster"] and n.key == f"run:{run.run_id}"
    assert [(c.metric, [b.alert for b in c.bars]) for c in n.charts] == [("share", [True, True])]
    oncall = Route.model_validate({"name": "oncall", "match": {"severities": ["critical"]},
                                   "slack": {"webhook_url": "https://hooks.test/x"}})
    rows, unrouted = route.outbox_rows(n, [oncall], [], {"slack", "email", "slack@oncall"})
    by_channel = {ch: msgspec.json.decode(payload)["alerts"] for _key, ch, payload in rows}
    assert sorted(by_channel) == ["email", "slack", "slack@oncall"]
    assert [a["kind"] for a in by_channel["slack@oncall"]] == ["error_rate"]
    assert [a["kind"] for a in by_channel["slack"]] == ["new_cluster"]
    assert unrouted == []
    held, unrouted = route.outbox_rows(n, [oncall], [], {"slack"}, held=True)
    assert [ch for _k, ch, _p in held] == [HELD_PREFIX + "slack"] and unrouted == [("oncall", 1)]
    assert route.is_held(T0 + timedelta(hours=7), T0, timedelta(hours=6))
    assert not route.is_held(T0 + timedelta(hours=7), T0, timedelta(0))


def test_a_processed_run_carries_every_cluster_with_its_lineage_and_share() -> None:
    run = run_from_properties(_props(0, ["Refunds"], per=15))
    d = _discovered(run.run_id)
    metrics = {0: ClusterMetrics(cluster_id=0, items=15, total_cost=1.0)}
    pr = enqueue.processed_run(run, d, lineages={0: "L0"}, metrics=metrics, alert_states=[], outbox=[],
                               run_metrics={"noise_share": 0.25}, now=T0)
    assert [(s.cluster_id, s.lineage_id, round(s.share, 2), bool(s.metrics)) for s in pr.snapshots] == [
        (0, "L0", 0.75, True), (-1, f"noise:{d.job_key}", 0.25, False)]
    assert (pr.job_key, pr.emitted_at, pr.processed_at, pr.run_metrics) == (d.job_key, T0, T0, {"noise_share": 0.25})


def test_held_rows_are_grouped_by_the_channel_their_summary_goes_to() -> None:
    def entry(i: int, channel: str) -> OutboxEntry:
        return OutboxEntry(id=i, key=f"k{i}", channel=channel, payload=b"{}", status="pending", attempts=0,
                           next_attempt_at=T0, last_error=None, created_at=T0)

    pending = [entry(1, HELD_PREFIX + "slack"), entry(2, "email"), entry(3, HELD_PREFIX + "email"),
               entry(4, HELD_PREFIX + "slack")]
    grouped = route.held_by_channel(pending)
    assert {ch: [e.id for e in es] for ch, es in grouped.items()} == {"email": [3], "slack": [1, 4]}
    assert list(grouped) == ["email", "slack"]


# --- source checks and the cycle's memory -------------------------------------------------------------------
def test_a_job_seen_is_its_newest_run_processed_or_discovered_if_watched_and_enabled() -> None:
    last = {f"{JOB}|trace": ("trace", "old", T0), "off|trace": ("trace", "x", T0),
            "name:legacy|generation": ("generation", "g", T0)}
    discovered = [_discovered("newer", T0 + timedelta(hours=1)), _discovered("older", T0 - timedelta(hours=1))]
    jobs: dict[str, dict[str, Any]] = {JOB: {"name": "Stage job"}, "off": {"name": "Off", "enabled": False}}
    seen = checks.jobs_seen(last, discovered, jobs, WatchConfig())
    assert [(s.job_key, s.job_name, s.last_run_id) for s in seen] == [
        (f"{JOB}|trace", "Stage job", "newer"), ("name:legacy|generation", "legacy", "g")]
    only = checks.jobs_seen(last, discovered, jobs, WatchConfig(jobs=["legacy"], levels=["generation"]))
    assert [s.last_run_id for s in only] == ["g"]
    assert last[f"{JOB}|trace"][1] == "old"  # the store's answer is not changed in place


def test_the_cursor_stops_before_the_first_failure_and_never_moves_back() -> None:
    todo = [_discovered(f"r{i}", T0 + timedelta(hours=i)) for i in range(4)]
    assert cursor.next_cursor(todo, ["r0", "r1", "r3"], None, None) == T0 + timedelta(hours=3)
    assert cursor.next_cursor(todo, ["r0", "r1", "r3"], T0 + timedelta(hours=2), None) == T0 + timedelta(hours=1)
    assert cursor.next_cursor(todo, ["r0"], None, T0 + timedelta(hours=5)) is None
    assert cursor.next_cursor(todo, [], None, None) is None


def test_landings_keep_each_run_once_and_only_the_latest() -> None:
    runs = [_discovered(f"r{i}", T0 + timedelta(days=i)) for i in range(5)]
    doc = cursor.add_landings({}, runs[:3], kept=4)
    assert cursor.add_landings(doc, runs[2:], kept=4) == {
        runs[0].job_key: [T0 + timedelta(days=i) for i in range(1, 5)]}
    assert doc[runs[0].job_key] == [T0 + timedelta(days=i) for i in range(3)]  # the input is left as it was
