"""Links back into PostHog's UI. Pure: the host, project and UI path come from the config."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote, urlencode


class PostHogLinks:
    """`ui_path` is "ai-observability" on current PostHog and "llm-analytics" on older deployments."""

    def __init__(self, host: str, project_id: int, ui_path: str = "ai-observability") -> None:
        self.base = f"{host.rstrip('/')}/project/{int(project_id)}/{ui_path.strip('/')}"

    def clusters(self) -> str:
        return f"{self.base}/clusters"

    def run(self, run_id: str) -> str:
        return f"{self.base}/clusters/{quote(run_id, safe='')}"

    def cluster(self, run_id: str, cluster_id: int) -> str:
        return f"{self.base}/clusters/{quote(run_id, safe='')}/{int(cluster_id)}"

    def evaluations(self) -> str:
        """PostHog's evaluations page (products/llm_analytics/manifest.tsx: `{ui_path}/evaluations`; one
        evaluation's page, `.../evaluations/{id}`, needs the evaluation's id, which a run does not carry)."""
        return f"{self.base}/evaluations"

    def trace(self, trace_id: str, *, timestamp: datetime | None = None, event: str | None = None) -> str:
        """PostHog's own trace links carry `?event=` (the generation to open) and `?timestamp=` (where to
        look for the trace's events, so the page need not scan all time): `urls.llmAnalyticsTrace(id,
        {event, timestamp})` in products/llm_analytics/manifest.tsx (PostHog/posthog), route
        `/ai-observability/traces/:id`."""
        url = f"{self.base}/traces/{quote(trace_id, safe='')}"
        params = {}
        if event:
            params["event"] = event
        if timestamp is not None:
            params["timestamp"] = timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return f"{url}?{urlencode(params)}" if params else url
