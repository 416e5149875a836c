"""Evaluation level for the generator: `$ai_evaluation` events judging generations, and the daily
`$ai_evaluation_clusters` runs PostHog's evaluation clustering writes about them.

Shapes read from PostHog/posthog, posthog/temporal/ai_observability/evaluation_clustering/:
- data.py: an evaluation is an `$ai_evaluation` event with `$ai_evaluation_id`, `$ai_evaluation_name`,
  `$ai_evaluation_result`, `$ai_evaluation_applicable`, `$ai_evaluation_runtime` (`llm_judge` | `hog`),
  `$ai_evaluation_reasoning`, `$ai_total_cost_usd` (the judge's cost, llm_judge only),
  `$ai_target_event_id` (the judged `$ai_generation`'s uuid) and `$ai_trace_id`; the generation is looked
  up in the same half-open window, and its operational values come from `toFloat(properties.$ai_latency)`
  (seconds, though the field is named latency_ms there), cost, tokens and `$ai_is_error`;
- aggregates.py: per cluster, `pass_rate` = passes / evaluations with a verdict, `na_rate` = not
  applicable / evaluations with a verdict (not applicable counts as a verdict), dominant evaluation name
  and runtime (most common), `avg_judge_cost` over judge costs > 0; the operational metrics over items
  whose generation was found (averages skip zeros, error rate over those items), `item_count` all items;
- event_emission.py: the run event has the other levels' shape, `$ai_clustering_level` = evaluation.

The clustering is simulated as in generator.py: PostHog clusters the evaluations' reasoning embeddings,
so here an item's cluster is what its reasoning is about: its judge and application, or, for the drift
scenario's new failure mode, that failure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitor.local.posthog.scenarios import APPS, EvalChange

IntArr = npt.NDArray[np.int64]
FloatArr = npt.NDArray[np.float64]

US = 1_000_000


@dataclass(frozen=True)
class Judge:
    name: str
    runtime: str  # "llm_judge" or "hog"
    pass_rate: float  # on a generation that did not fail
    na_rate: float  # share of evaluations judged not applicable
    judge_cost: float | None  # mean USD per evaluation (llm_judge only)
    reasons_pass: tuple[str, ...]
    reasons_fail: tuple[str, ...]
    share: float = 0.12  # share of the generations it evaluates (of its apps)
    apps: tuple[str, ...] = ()  # the apps it is enabled for (a judge's own filters); () = every app


JUDGES: tuple[Judge, ...] = (
    Judge("Helpfulness", "llm_judge", 0.86, 0.03, 0.0011,
          ("The answer resolves the user's request with concrete steps.",
           "The reply addresses the question directly and completely."),
          ("The answer is generic and does not address the user's actual question.",
           "The reply asks the user for information already given.")),
    Judge("Hallucination check", "llm_judge", 0.93, 0.05, 0.0019,
          ("Every claim is supported by the retrieved context.",),
          ("The answer states facts that are not in the provided context.",), share=0.5,
          apps=("rag_search",)),
    Judge("Valid JSON output", "hog", 0.97, 0.30, None,
          ("Output parses as JSON and matches the schema.",),
          ("Output is not valid JSON.",), share=0.1, apps=("sql_analytics", "agent", "coding_assistant")),
)
JUDGE_INDEX = {j.name: i for i, j in enumerate(JUDGES)}
APP_IDS: tuple[str, ...] = tuple(APPS)
FAILED_GENERATION_PASS = 0.1  # a judge rarely passes a generation that errored


@dataclass
class Evaluations:
    """Column store of `$ai_evaluation` items, aligned with their events' slots."""

    t: IntArr
    judge: IntArr
    app: IntArr
    topic: IntArr
    cluster_key: list[str]
    key: list[str]  # event uuid (the item key)
    verdict: list[str]  # "pass" | "fail" | "na"
    judge_cost: FloatArr
    gen_cost: FloatArr
    gen_latency: FloatArr
    gen_tokens: FloatArr
    gen_errors: IntArr
    target: list[str]  # the judged generation's uuid
    trace_id: list[str]
    events: list[tuple[str, str, str, str, int]]  # uuid, event, distinct_id, properties JSON, ts (µs)


def cluster_titles(key: str) -> tuple[str, str]:
    """Title and description of a simulated evaluation cluster, as PostHog's labeling agent would write."""
    if key.startswith("failure:"):
        _, judge, note = key.split(":", 2)
        return note, f"- {judge} failures with one shared cause\n- appeared suddenly, concentrated in one flow"
    judge, app = key.split("|", 1)
    return (f"{judge} verdicts on {app.replace('_', ' ')}",
            f"- {judge} evaluations of {app.replace('_', ' ')} generations\n- mostly routine verdicts")


def make_evaluations(*, seed: int, team_id: int, gen_t: IntArr, gen_topic: IntArr, gen_app: IntArr,
                     gen_key: list[str], gen_trace: list[str], gen_cost: FloatArr, gen_latency: FloatArr,
                     gen_tokens: FloatArr, gen_errors: IntArr, topic_ids: tuple[str, ...],
                     changes: list[tuple[EvalChange, int]], string_share: float,
                     uuid4s: Any, uuid7: Any, evaluation_ids: dict[str, str]) -> Evaluations:
    """Judge a sample of the generations. `changes`: the scenario's evaluation changes with the instant
    each takes effect. Numbers and booleans are sometimes sent as strings, as SDKs do."""
    rng = np.random.default_rng([seed, 77])
    G = len(gen_t)
    picks = []
    for judge in JUDGES:
        u = rng.random(G)  # drawn for every judge whatever its filters: streams stay aligned
        ok = np.ones(G, dtype=bool) if not judge.apps else np.isin(
            gen_app, [APP_IDS.index(a) for a in judge.apps])
        picks.append(np.flatnonzero((u < judge.share) & ok))
    gi = np.concatenate(picks)
    ji = np.concatenate([np.full(len(p), j, dtype=np.int64) for j, p in enumerate(picks)])
    n = len(gi)
    t = gen_t[gi] + rng.integers(5 * US, 600 * US, n)
    order = np.argsort(t, kind="stable")
    gi, ji, t = gi[order], ji[order], t[order]
    u_na, u_pass, u_cost, u_reason = rng.random(n), rng.random(n), rng.random(n), rng.integers(0, 1 << 30, n)
    stringy = (rng.random(n) < string_share).tolist()
    uuids = uuid4s(rng, n)
    verdicts: list[str] = []
    keys: list[str] = []
    costs = np.zeros(n)
    events: list[tuple[str, str, str, str, int]] = []
    tl, gil, jil = t.tolist(), gi.tolist(), ji.tolist()
    for k in range(n):
        judge = JUDGES[jil[k]]
        g = gil[k]
        app = APP_IDS[int(gen_app[g])]
        topic = topic_ids[int(gen_topic[g])]
        p_pass = FAILED_GENERATION_PASS if gen_errors[g] > 0 else judge.pass_rate
        ckey = f"{judge.name}|{app}"
        failure_note = None
        for ch, eff in changes:
            if tl[k] < eff or ch.judge != judge.name:
                continue
            if ch.kind == "pass_rate_drop" and ch.app == app:
                p_pass = min(p_pass, ch.pass_rate)
            elif ch.kind == "failure_mode" and ch.topic == topic and u_pass[k] < ch.share:
                failure_note = ch.title
        na = u_na[k] < judge.na_rate
        if failure_note is not None and not na:
            verdict = "fail"
            ckey = f"failure:{judge.name}:{failure_note}"
        else:
            verdict = "na" if na else "pass" if u_pass[k] < p_pass else "fail"
        verdicts.append(verdict)
        keys.append(ckey)
        q = '"' if stringy[k] else ""
        cost_part = ""
        if judge.judge_cost is not None:
            costs[k] = round(judge.judge_cost * (0.5 + u_cost[k]), 8)
            cost_part = f',"$ai_total_cost_usd":{q}{costs[k]}{q}'
        bank = judge.reasons_pass if verdict == "pass" else judge.reasons_fail
        reason = ("Not applicable: the output is not of the kind this evaluation checks." if verdict == "na"
                  else failure_note if failure_note is not None else bank[int(u_reason[k]) % len(bank)])
        result = "true" if verdict == "pass" else "false"
        applicable = "false" if verdict == "na" else "true"
        props = (f'{{"$ai_evaluation_id":"{evaluation_ids[judge.name]}","$ai_evaluation_name":"{judge.name}",'
                 f'"$ai_evaluation_result":{q}{result}{q},"$ai_evaluation_applicable":{q}{applicable}{q},'
                 f'"$ai_evaluation_runtime":"{judge.runtime}","$ai_evaluation_reasoning":"{reason}"{cost_part},'
                 f'"$ai_target_event_id":"{gen_key[g]}","$ai_trace_id":"{gen_trace[g]}"}}')
        events.append((uuids[k], "$ai_evaluation", f"evaluations_{team_id}", props, tl[k]))
    return Evaluations(t=t, judge=ji, app=gen_app[gi], topic=gen_topic[gi], cluster_key=keys, key=uuids,
                       verdict=verdicts, judge_cost=costs, gen_cost=gen_cost[gi], gen_latency=gen_latency[gi],
                       gen_tokens=gen_tokens[gi], gen_errors=gen_errors[gi], target=[gen_key[g] for g in gil],
                       trace_id=[gen_trace[g] for g in gil], events=events)


def evaluation_metrics(ev: Evaluations, rows: npt.NDArray[np.int64]) -> dict[str, Any]:
    """One cluster's `metrics` as aggregates.py computes them (every judged generation exists here)."""
    n = len(rows)
    cost, lat, tok, err = ev.gen_cost[rows], ev.gen_latency[rows], ev.gen_tokens[rows], ev.gen_errors[rows]
    cpos, lpos, tpos = cost > 0, lat > 0, tok > 0
    verdicts = [ev.verdict[i] for i in rows.tolist()]
    passes = verdicts.count("pass")
    na = verdicts.count("na")
    with_verdict = len(verdicts)
    names = Counter(JUDGES[int(ev.judge[i])].name for i in rows.tolist())
    runtimes = Counter(JUDGES[int(ev.judge[i])].runtime for i in rows.tolist())
    jc = ev.judge_cost[rows]
    jpos = jc > 0
    errors = int((err > 0).sum())
    return {
        "avg_cost": float(cost[cpos].sum()) / int(cpos.sum()) if cpos.any() else None,
        "avg_latency": float(lat[lpos].sum()) / int(lpos.sum()) if lpos.any() else None,
        "avg_tokens": float(tok[tpos].sum()) / int(tpos.sum()) if tpos.any() else None,
        "total_cost": float(cost[cpos].sum()) if cpos.any() else None,
        "error_rate": errors / n if n else None,
        "error_count": errors,
        "item_count": n,
        "pass_rate": passes / with_verdict if with_verdict else None,
        "na_rate": na / with_verdict if with_verdict else None,
        "dominant_evaluation_name": names.most_common(1)[0][0] if names else None,
        "dominant_runtime": runtimes.most_common(1)[0][0] if runtimes else None,
        "avg_judge_cost": float(jc[jpos].sum()) / int(jpos.sum()) if jpos.any() else None,
    }
