"""What drove a cost, latency or error alert: the alert explanation query's rows (one per item of the
alerted clusters, this run and the previous one) turned into the few sentences worth saying and the
traces worth opening. Pure: rows in, values out.

People reading "average cost +180%" next ask which model, which error, which flow; the answer is in the
cluster's own events, compared with the same cluster (its match) in the previous run: the model whose
share of the cluster's generations moved most, tokens in and out per item, the error type and HTTP
status behind the failures, the span they failed in, and the trace names when their mix moved.
Values here (model names, error messages, titles) come from people's apps: they are kept raw; bounding
and escaping happen at render time (monitor/notify/render.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from monitor.alerts import TraceRef
from monitor.kinds import Aspect

# A share change smaller than this says nothing: said as "unchanged".
MIN_SHARE_MOVE = 0.05
# Tokens per item changing by less than this are not worth a sentence on an error alert.
MIN_TOKEN_MOVE = 0.25
# Error messages are long; the sentence quotes this much of one (the trace link has the rest).
ERROR_CHARS = 120
MAX_TRACES = 3


@dataclass(frozen=True)
class ItemRow:
    """One item of an alerted cluster, as the explanation query returns it."""

    run_id: str
    cluster_id: int
    item_key: str
    trace_id: str
    first_seen: datetime | None
    cost: float
    latency: float
    input_tokens: float
    output_tokens: float
    errors: int
    models: tuple[str, ...]
    providers: tuple[str, ...]
    model_costs: tuple[float, ...]
    error_types: tuple[str, ...]
    statuses: tuple[str, ...]
    error_spans: tuple[str, ...]
    trace_names: tuple[str, ...]
    summary_title: str


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return 0.0
    return x if x == x else 0.0


def _texts(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    return tuple("" if x is None else str(x) for x in v)


def _nums(v: Any) -> tuple[float, ...]:
    return tuple(_num(x) for x in v) if isinstance(v, (list, tuple)) else ()


def item_rows(rows: Iterable[Mapping[str, Any]]) -> list[ItemRow]:
    """Rows of the query as values; a row without a run, cluster or item is skipped (it names nothing)."""
    out = []
    for r in rows:
        try:
            cid = int(r["cluster_id"])
            run_id, key = str(r["run_id"]), str(r["item_key"])
        except (KeyError, TypeError, ValueError):
            continue
        seen = _num(r.get("first_seen"))
        out.append(ItemRow(
            run_id=run_id, cluster_id=cid, item_key=key, trace_id=str(r.get("trace_id") or "") or key,
            first_seen=datetime.fromtimestamp(seen, UTC) if seen > 0 else None,
            cost=_num(r.get("cost")), latency=_num(r.get("latency")),
            input_tokens=_num(r.get("input_tokens")), output_tokens=_num(r.get("output_tokens")),
            errors=int(_num(r.get("errors"))), models=_texts(r.get("models")), providers=_texts(r.get("providers")),
            model_costs=_nums(r.get("model_costs")), error_types=_texts(r.get("error_types")),
            statuses=_texts(r.get("statuses")), error_spans=_texts(r.get("error_spans")),
            trace_names=_texts(r.get("trace_names")), summary_title=str(r.get("summary_title") or "")))
    return out


@dataclass
class Sample:
    """One cluster's items in one run, counted the ways the sentences read them."""

    items: int = 0
    failed_items: int = 0
    items_with_tokens: int = 0
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    models: Counter[str] = field(default_factory=Counter)
    model_cost: dict[str, float] = field(default_factory=dict)
    providers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    spans: Counter[str] = field(default_factory=Counter)
    trace_names: Counter[str] = field(default_factory=Counter)


def sample(rows: Iterable[ItemRow]) -> Sample:
    s = Sample()
    for r in rows:
        s.items += 1
        s.failed_items += 1 if r.errors > 0 else 0
        if r.input_tokens + r.output_tokens > 0:
            s.items_with_tokens += 1
            s.input_tokens += r.input_tokens
            s.output_tokens += r.output_tokens
        s.models.update(m for m in r.models if m)
        s.providers.update(p for p in r.providers if p)
        if len(r.model_costs) == len(r.models):
            for m, c in zip(r.models, r.model_costs, strict=True):
                if m:
                    s.model_cost[m] = s.model_cost.get(m, 0.0) + c
        s.errors.update(" ".join(e.split()) or "(no message)" for e in r.error_types)
        s.statuses.update(x for x in r.statuses if x)
        s.spans.update(x for x in r.error_spans if x)
        s.trace_names.update(x for x in r.trace_names if x)
    return s


def _share(c: Counter[str], key: str) -> float:
    total = sum(c.values())
    return c[key] / total if total else 0.0


def _pct(v: float) -> str:
    return "<1%" if 0 < v < 0.01 else f"{v:.0%}"


def _largest_move(now: Counter[str], before: Counter[str]) -> tuple[str, float, float] | None:
    """The key whose share grew most (what took traffic over: the new model, not the one it replaced;
    ties: the larger share now), with its shares before and now."""
    keys = set(now) | set(before)
    if not keys:
        return None
    best = max(sorted(keys), key=lambda k: (_share(now, k) - _share(before, k), _share(now, k)))
    return best, _share(before, best), _share(now, best)


def _mix(c: Counter[str], n: int = 2) -> str:
    ranked = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return ", ".join(f"{k} {_pct(_share(c, k))}" for k, _ in ranked)


def _model_sentence(now: Sample, before: Sample | None, aspect: Aspect) -> str | None:
    if not now.models:
        return None
    if before is None or not before.models:
        return f"Models of this cluster's generations: {_mix(now.models)}"
    move = _largest_move(now.models, before.models)
    assert move is not None
    model, was, is_ = move
    if abs(is_ - was) < MIN_SHARE_MOVE:
        return f"Model mix unchanged since the previous run: {_mix(now.models)} of generations"
    text = f"{model} went from {_pct(was)} to {_pct(is_)} of this cluster's generations"
    total_cost = sum(now.model_cost.values())
    model_cost = now.model_cost.get(model, 0.0)
    if aspect == "cost" and total_cost > 0 and model_cost > 0:
        text += f" ({_pct(model_cost / total_cost)} of its cost)"
    pmove = _largest_move(now.providers, before.providers)
    if pmove is not None and len(set(now.providers) | set(before.providers)) > 1 \
            and abs(pmove[2] - pmove[1]) >= MIN_SHARE_MOVE:
        text += f"; provider {pmove[0]} {_pct(pmove[1])} → {_pct(pmove[2])}"
    return text


def _per_item(s: Sample) -> tuple[float, float] | None:
    if not s.items_with_tokens:
        return None
    return s.input_tokens / s.items_with_tokens, s.output_tokens / s.items_with_tokens


def _token_sentence(now: Sample, before: Sample | None, aspect: Aspect) -> str | None:
    cur = _per_item(now)
    if cur is None:
        return None
    text = f"Tokens per item: {cur[0]:,.0f} in, {cur[1]:,.0f} out"
    prev = _per_item(before) if before is not None else None
    if prev is None:
        return text if aspect != "errors" else None
    moved = max(abs(c - p) / p if p else 0.0 for c, p in zip(cur, prev, strict=True))
    if aspect == "errors" and moved < MIN_TOKEN_MOVE:
        return None
    return text + f" (was {prev[0]:,.0f} in, {prev[1]:,.0f} out)"


def _short(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1].rstrip() + "…"


def _top(now: Counter[str], before: Counter[str] | None) -> tuple[str, float, float | None] | None:
    if not now:
        return None
    key = min(now.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    return key, _share(now, key), (_share(before, key) if before else None)


def _was(v: float | None) -> str:
    return "" if v is None else f", was {_pct(v)}"


def _error_sentences(now: Sample, before: Sample | None, aspect: Aspect) -> list[str]:
    if not now.errors:
        return []
    prev_errors = before.errors if before is not None else None
    if aspect != "errors" and (before is None or now.failed_items / now.items
                               < before.failed_items / before.items + MIN_SHARE_MOVE):
        return []  # failures did not grow: not what drove a cost or latency alert
    out = []
    top = _top(now.errors, prev_errors)
    if top is not None:
        err, share, was = top
        out.append(f"Top error: \u201c{_short(err)}\u201d in {_pct(share)} of failed calls{_was(was)}")
    status = _top(now.statuses, before.statuses if before is not None else None)
    if status is not None:
        out.append(f"HTTP {status[0]} in {_pct(status[1])} of failed calls{_was(status[2])}")
    span = _top(now.spans, before.spans if before is not None else None)
    if span is not None and aspect == "errors":
        out.append(f"Failed calls mostly in span \u201c{span[0]}\u201d ({_pct(span[1])})")
    return out


def _trace_name_sentence(now: Sample, before: Sample | None) -> str | None:
    if before is None or not now.trace_names or not before.trace_names:
        return None
    move = _largest_move(now.trace_names, before.trace_names)
    if move is None or abs(move[2] - move[1]) < MIN_SHARE_MOVE * 4:
        return None
    return f"Trace \u201c{move[0]}\u201d went from {_pct(move[1])} to {_pct(move[2])} of items"


def explain(now: Iterable[ItemRow], before: Iterable[ItemRow] | None, aspect: Aspect) -> tuple[str, ...]:
    """The sentences for one alert: the aspect's own first (errors for an error alert), then the rest."""
    s_now = sample(now)
    s_before = sample(before) if before is not None else None
    if s_before is not None and s_before.items == 0:
        s_before = None
    if s_now.items == 0:
        return ()
    model = _model_sentence(s_now, s_before, aspect)
    tokens = _token_sentence(s_now, s_before, aspect)
    errors = _error_sentences(s_now, s_before, aspect)
    names = _trace_name_sentence(s_now, s_before)
    parts: list[str | None] = ([*errors, model, tokens, names] if aspect == "errors"
                               else [model, tokens, *errors, names])
    return tuple(p for p in parts if p)


TraceLink = Callable[[ItemRow], str]


def representative(rows: Sequence[ItemRow], aspect: Aspect, central: Sequence[str], link: TraceLink,
                   n: int = MAX_TRACES) -> tuple[TraceRef, ...]:
    """The traces to open for an alert, one per trace: the costliest (cost), the slowest (latency) or the
    failing ones, those with the top error first (errors), then the cluster's most central item.
    `central`: item keys by rank, as the run payload lists them."""
    if not rows:
        return ()
    by_key = {r.item_key: r for r in rows}
    picks: list[tuple[ItemRow, str]] = []
    if aspect == "cost":
        picks += [(r, f"costliest, ${r.cost:,.4f}") for r in sorted(rows, key=lambda r: (-r.cost, r.item_key))
                  if r.cost > 0]
    elif aspect == "latency":
        picks += [(r, f"slowest, {r.latency:,.1f} s") for r in sorted(rows, key=lambda r: (-r.latency, r.item_key))
                  if r.latency > 0]
    else:
        top = _top(sample(rows).errors, None)
        top_error = top[0] if top else ""
        failing = [r for r in rows if r.errors > 0]
        failing.sort(key=lambda r: (top_error not in (" ".join(e.split()) for e in r.error_types), -r.errors,
                                    r.item_key))
        picks += [(r, "failed" + (f": {_short(r.error_types[0])}" if r.error_types and r.error_types[0] else ""))
                  for r in failing]
    out: list[TraceRef] = []
    seen: set[str] = set()

    def take(candidates: Iterable[tuple[ItemRow, str]], limit: int) -> None:
        taken = 0
        for r, why in candidates:
            if taken >= limit or len(out) >= n:
                return
            if r.trace_id not in seen:
                seen.add(r.trace_id)
                out.append(TraceRef(trace_id=r.trace_id, url=link(r), why=why, title=r.summary_title))
                taken += 1

    take(picks, n - 1)
    take(((by_key[k], "most typical") for k in central if k in by_key), 1)
    return tuple(out)
