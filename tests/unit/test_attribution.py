"""What drove an alert, from the explanation query's rows: the sentences and the representative traces."""

from __future__ import annotations

from typing import Any

from monitor.attribution import ItemRow, explain, item_rows, representative
from monitor.links import PostHogLinks


def _row(run: str, key: str, *, trace: str | None = None, models: tuple[str, ...] = ("gpt-4o-mini",),
         cost: float = 0.001, errors: tuple[str, ...] = (), statuses: tuple[str, ...] = (),
         spans: tuple[str, ...] = (), tokens: tuple[float, float] = (1000, 200), title: str | None = None,
         latency: float = 1.0) -> dict[str, Any]:
    return {"run_id": run, "cluster_id": 3, "item_key": key, "trace_id": trace or key, "first_seen": 1_790_000_000,
            "cost": str(cost), "latency": latency, "input_tokens": tokens[0], "output_tokens": tokens[1],
            "errors": len(errors), "models": list(models), "providers": ["openai"] * len(models),
            "model_costs": [cost / max(1, len(models))] * len(models), "error_types": list(errors),
            "statuses": list(statuses), "error_spans": list(spans), "trace_names": ["support_chat"],
            "summary_title": title}


def _split(rows: list[dict[str, Any]]) -> tuple[list[ItemRow], list[ItemRow]]:
    items = item_rows(rows)
    return [r for r in items if r.run_id == "now"], [r for r in items if r.run_id == "before"]


def test_a_model_switch_is_named_with_its_share_before_and_now() -> None:
    rows = [_row("before", f"b{i}") for i in range(25)]
    rows += [_row("now", f"n{i}", models=("gpt-4o",), cost=0.02) for i in range(20)]
    rows += [_row("now", f"m{i}") for i in range(5)]
    now, before = _split(rows)
    lines = explain(now, before, "cost")
    assert lines[0].startswith("gpt-4o went from 0% to 80% of this cluster's generations ("), lines
    assert "of its cost" in lines[0]
    assert lines[1] == "Tokens per item: 1,000 in, 200 out (was 1,000 in, 200 out)"


def test_an_error_alert_leads_with_the_error_type_status_and_span() -> None:
    rows = [_row("before", f"b{i}", errors=("RateLimitError: slow down",) if i == 0 else (),
                 statuses=("429",) if i == 0 else ()) for i in range(30)]
    rows += [_row("now", f"n{i}", errors=("UpstreamError: payments provider returned 502",),
                  statuses=("502",), spans=("answer",)) for i in range(9)]
    rows += [_row("now", f"m{i}") for i in range(21)]
    now, before = _split(rows)
    lines = explain(now, before, "errors")
    assert lines[0] == ("Top error: \u201cUpstreamError: payments provider returned 502\u201d in 100% of failed "
                        "calls, was 0%")
    assert lines[1] == "HTTP 502 in 100% of failed calls, was 0%"
    assert lines[2] == "Failed calls mostly in span \u201canswer\u201d (100%)"
    # Tokens did not move: not said on an error alert. The model mix is said as unchanged.
    assert not any(line.startswith("Tokens") for line in lines)
    assert any(line.startswith("Model mix unchanged") for line in lines)


def test_without_a_previous_run_the_mix_is_described_not_compared() -> None:
    now, _ = _split([_row("now", "a", models=("o1", "gpt-4o-mini"))])
    assert explain(now, None, "latency")[0] == "Models of this cluster's generations: gpt-4o-mini 50%, o1 50%"
    assert explain([], None, "cost") == ()


def test_representative_traces_are_the_costliest_and_the_central_one_each_trace_once() -> None:
    links = PostHogLinks("https://us.posthog.com", 2)
    rows = [_row("now", "g1", trace="t1", cost=0.5, title="Refund for order 123"),
            _row("now", "g2", trace="t1", cost=0.4),  # the same trace as g1: listed once
            _row("now", "g3", trace="t2", cost=0.3),
            _row("now", "g4", trace="t3", cost=0.0)]
    items = item_rows(rows)
    refs = representative(items, "cost", ["g4", "g1"], lambda r: links.trace(r.trace_id, timestamp=r.first_seen,
                                                                              event=r.item_key))
    assert [(t.trace_id, t.why.split(",")[0]) for t in refs] == [("t1", "costliest"), ("t2", "costliest"),
                                                                ("t3", "most typical")]
    assert refs[0].title == "Refund for order 123"
    assert refs[0].url == ("https://us.posthog.com/project/2/ai-observability/traces/t1"
                           "?event=g1&timestamp=2026-09-21T14%3A13%3A20Z")


def test_failing_traces_with_the_top_error_come_first() -> None:
    rows = [_row("now", "a", errors=("Timeout",)), _row("now", "b", errors=("Bad gateway",)),
            _row("now", "c", errors=("Bad gateway",)), _row("now", "d")]
    refs = representative(item_rows(rows), "errors", ["d"], lambda r: f"u/{r.trace_id}")
    assert [t.trace_id for t in refs] == ["b", "c", "d"]
    assert refs[0].why == "failed: Bad gateway"


def test_bad_rows_are_skipped_and_odd_cells_read_leniently() -> None:
    items = item_rows([{"cluster_id": "x"}, {"run_id": "r", "cluster_id": 1, "item_key": "k", "cost": "n/a",
                                             "models": None, "first_seen": None}])
    assert len(items) == 1 and items[0].cost == 0.0 and items[0].models == () and items[0].first_seen is None
