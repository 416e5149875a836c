"""Links back into PostHog's UI. Pure: the host, project and UI path come from the config."""

from __future__ import annotations

from urllib.parse import quote


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

    def trace(self, trace_id: str) -> str:
        return f"{self.base}/traces/{quote(trace_id, safe='')}"
