"""Plain-text reports for the terminal: `diff` and `history`. Pure: values in, text out."""

from __future__ import annotations

from monitor.matching.model import RunDiff
from monitor.runs import Run
from monitor.store.base import ClusterSnapshot, Store


def _title(run: Run, cid: int) -> str:
    c = run.cluster(cid)
    return c.title if c else f"#{cid}"


def render_diff(prev: Run, new: Run, d: RunDiff, *, explain: bool = False) -> str:
    lines = [f"{prev.run_id}  ->  {new.run_id}",
             f"noise share {d.prev_noise_share:.1%} -> {d.new_noise_share:.1%} ({d.noise_share_delta_pp:+.1f} pp); "
             f"items shared between runs: {d.item_overlap:.1%}", ""]
    lines.append(f"matched ({len(d.matches)}):")
    for m in sorted(d.matches, key=lambda m: -abs(m.share_delta_pp)):
        renamed = "" if m.prev_title == m.new_title else f"  (was '{m.prev_title}')"
        lines.append(f"  {m.prev:>3} -> {m.new:<3} {m.new_title[:60]:<60} {m.prev_share:6.1%} -> {m.new_share:6.1%} "
                     f"{m.share_delta_pp:+6.1f} pp  score {m.score:.2f}{renamed}")
        if explain and m.signals:
            lines.append("        " + "  ".join(f"{k}={v:.2f}" for k, v in sorted(m.signals.items())))
    for label, ids, run in (("new", d.new, new), ("disappeared", d.disappeared, prev)):
        lines.append(f"{label} ({len(ids)}):")
        for cid in ids:
            lines.append(f"  {cid:>3} {_title(run, cid)[:70]}  ({run.share(cid):.1%})")
    if d.splits:
        lines.append(f"splits ({len(d.splits)}):")
        for s in d.splits:
            parts = ", ".join(f"'{_title(new, n)}'" for n in s.new)
            lines.append(f"  '{_title(prev, s.prev)}' -> {parts}  (confidence {s.confidence:.2f})")
    if d.merges:
        lines.append(f"merges ({len(d.merges)}):")
        for mg in d.merges:
            parts = ", ".join(f"'{_title(prev, p)}'" for p in mg.prev)
            lines.append(f"  {parts} -> '{_title(new, mg.new)}'  (confidence {mg.confidence:.2f})")
    return "\n".join(lines)


def _history_rows(snaps: list[ClusterSnapshot]) -> list[str]:
    out = [f"{'window end':<17} {'run':<44} {'size':>6} {'share':>7} {'cost':>10} {'avg cost':>9} {'errors':>7}  title"]
    for s in snaps:
        m = s.metrics
        cost = f"${m['total_cost']:.2f}" if m.get("total_cost") is not None else "-"
        avg = f"${m['avg_cost']:.4f}" if m.get("avg_cost") is not None else "-"
        err = f"{m['error_rate']:.1%}" if m.get("error_rate") is not None else "-"
        out.append(f"{s.window_end:%Y-%m-%d %H:%M} {s.run_id[:44]:<44} {s.size:>6} {s.share:>7.1%} {cost:>10} "
                   f"{avg:>9} {err:>7}  {s.title}")
    return out


def show_history(store: Store, *, lineage: str | None, title: str | None, limit: int) -> str:
    if lineage:
        snaps = store.history(lineage, limit)
        if not snaps:
            return f"no history for lineage {lineage!r}"
        return "\n".join([f"lineage {lineage}", *_history_rows(snaps)])
    lineages = store.find_lineages(title or "", limit=20)
    if not lineages:
        return "no lineages" + (f" with a title containing {title!r}" if title else "")
    blocks: list[str] = []
    for lid in lineages:
        snaps = store.history(lid, limit)
        if snaps:
            blocks.append("\n".join([f"lineage {lid}  ({snaps[-1].job_key})", *_history_rows(snaps)]))
    return "\n\n".join(blocks)
