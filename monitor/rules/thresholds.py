"""The `thresholds:` section: which limits hold for one cluster. Pure.

The built-in kinds that read these limits are in monitor/kinds.py; the engine that asks them is
monitor/rules/engine.py.
"""

from __future__ import annotations

import fnmatch

from monitor.config import Override, Thresholds, ThresholdsConfig


def thresholds_for(cfg: ThresholdsConfig, title: str, lineage_id: str | None) -> Thresholds:
    """Defaults, with every matching override laid over them in file order (later wins)."""
    merged = cfg.defaults.model_dump()
    for o in cfg.overrides:
        if _applies(o, title, lineage_id):
            merged.update(o.thresholds.model_dump(exclude_unset=True))
    return Thresholds.model_validate(merged)


def _applies(o: Override, title: str, lineage_id: str | None) -> bool:
    if o.lineage and lineage_id and o.lineage == lineage_id:
        return True
    return bool(o.title and fnmatch.fnmatchcase(title.lower(), o.title.lower()))
