"""The world the local PostHog simulates, and the scenarios that change it.

Everything here is data: the LLM apps a team runs, their usage patterns ("topics", the ground-truth
clusters), the models and prices they use, the words a labelling LLM would use for each topic, and for
each scenario the few changes that happen to that world on given days. `generator.py` turns this into
events and clustering runs; keeping the description apart lets a reader see at a glance what a scenario
does and lets tests name topics and days without knowing how traffic is produced.

Topic volumes are traces per day at scale 1.0. Every topic is kept at 3% or more of the traffic of any
job that sees it, so sampling noise alone never pushes a cluster under HDBSCAN's 2% minimum size: a
quiet scenario must stay quiet.

Day numbers count runs: day X is the X-th daily run (0-based), and a change made on day X takes effect
right after the runs of day X-1 closed their windows, so run X is the first run that sees it (with one
day of changed traffic in its seven-day window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ChangeKind = Literal["cost_spike", "error_surge", "new_cluster", "disappear", "split", "merge"]


@dataclass(frozen=True)
class Model:
    name: str
    provider: str
    # USD per token (list prices per million tokens / 1e6).
    input_price: float
    output_price: float
    # Decoding speed and fixed overhead: latency = overhead + output_tokens / tokens_per_second.
    tokens_per_second: float
    overhead_s: float


MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        Model("gpt-4o", "openai", 2.50e-6, 10.00e-6, 60.0, 0.45),
        Model("gpt-4o-mini", "openai", 0.15e-6, 0.60e-6, 90.0, 0.30),
        Model("o1", "openai", 15.00e-6, 60.00e-6, 35.0, 4.0),
        Model("claude-3-5-sonnet-20241022", "anthropic", 3.00e-6, 15.00e-6, 55.0, 0.55),
        Model("claude-3-haiku-20240307", "anthropic", 0.25e-6, 1.25e-6, 120.0, 0.25),
        Model("gemini-1.5-flash", "google", 0.075e-6, 0.30e-6, 150.0, 0.25),
        Model("text-embedding-3-small", "openai", 0.02e-6, 0.0, 1e9, 0.08),
    )
}
EMBEDDING_MODEL = "text-embedding-3-small"


@dataclass(frozen=True)
class App:
    """One LLM application of the team: its SDK, its trace shape and its weekly rhythm."""

    id: str
    lib: str
    trace_name: str
    # A cheap first generation (intent router / planner); None when the app has none.
    router_model: str | None
    router_topic: str | None
    # Probabilities of 1, 2, 3, ... main generations per trace.
    main_gens: tuple[float, ...]
    span_names: tuple[str, ...]
    # Probabilities of 0, 1, 2, ... spans per trace.
    spans: tuple[float, ...]
    embedding_prob: float
    # Volume factor per weekday, Monday first.
    weekly: tuple[float, float, float, float, float, float, float]
    users: int
    # Share of traces that start with the router generation (support users often pick a category).
    router_prob: float = 1.0


APPS: dict[str, App] = {
    a.id: a
    for a in (
        App("support_bot", "posthog-python", "support_chat", "gpt-4o-mini", "support_routing",
            (0.7, 0.3), ("lookup_order", "kb_search", "crm.update_ticket"), (0.35, 0.45, 0.2), 0.5,
            (1.05, 1.05, 1.0, 1.0, 1.0, 0.95, 0.95), 6000, router_prob=0.5),
        App("coding_assistant", "posthog-node", "code_assist", None, None,
            (0.5, 0.35, 0.15), ("repo_context", "run_linter"), (0.45, 0.45, 0.1), 0.3,
            (1.12, 1.12, 1.1, 1.1, 1.06, 0.75, 0.75), 1500),
        App("rag_search", "posthog-python", "docs_search", None, None,
            (0.4, 0.6), ("vector_search", "rerank"), (0.0, 0.55, 0.45), 1.0,
            (1.08, 1.08, 1.06, 1.06, 1.02, 0.85, 0.85), 5000),
        App("sql_analytics", "posthog-python", "text_to_sql", None, None,
            (0.6, 0.3, 0.1), ("schema_lookup", "execute_query"), (0.0, 0.5, 0.5), 0.0,
            (1.12, 1.12, 1.1, 1.1, 1.06, 0.75, 0.75), 600),
        App("agent", "posthog-node", "agent_run", "claude-3-haiku-20240307", "agent_planning",
            (0.45, 0.35, 0.2), ("web.search", "web.fetch", "calendar.api", "flights.search"),
            (0.0, 0.4, 0.4, 0.2), 0.0,
            (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0), 1200),
    )
}


@dataclass(frozen=True)
class Topic:
    """One usage pattern: what a cluster is, in truth. Titles are what a labelling LLM might write.

    `light` titles are near-paraphrases of one another (word order, synonyms, casing); `heavy` ones
    describe the same traffic from another angle. The first light title is the canonical name.
    """

    id: str
    app: str
    volume: float
    model: str
    input_tokens: float
    output_tokens: float
    error_rate: float
    light: tuple[str, ...]
    heavy: tuple[str, ...]
    bullets: tuple[str, ...]
    trace_name: str = ""
    # A topic that is not part of the baseline traffic (it only appears through a scenario change).
    latent: bool = False
    # Flat weekly profile: a launched feature is used the same every day.
    flat_week: bool = False
    # Probabilities of 1, 2, 3, ... main generations, when the topic differs from its app.
    main_gens: tuple[float, ...] | None = None
    # Volume multiplier for the first 24 hours of a topic that starts mid-scenario (a launch campaign):
    # big enough to be a clear cluster in the very first run, without swamping the others afterwards.
    launch_boost: float = 1.0

    @property
    def title(self) -> str:
        return self.light[0]


def _t(*items: str) -> tuple[str, ...]:
    return items


TOPICS: dict[str, Topic] = {
    t.id: t
    for t in (
        # --- support bot -------------------------------------------------------------------------
        Topic("refunds", "support_bot", 300, "gpt-4o-mini", 1800, 260, 0.015,
              _t("Refund and cancellation requests", "Cancellation and refund requests",
                 "Customer refund and cancellation requests", "Refund & cancellation requests",
                 "refund and cancellation requests"),
              _t("Customers asking for their money back", "Order cancellations with refund follow-up",
                 "Reimbursement requests after cancelled orders"),
              _t("- Users ask to refund a charge or cancel a subscription",
                 "- Often references an order ID or invoice number",
                 "- The bot checks refund eligibility against the return policy",
                 "- Some conversations escalate to a human agent")),
        Topic("password_login", "support_bot", 240, "gpt-4o-mini", 1400, 200, 0.012,
              _t("Password reset and login help", "Login and password reset help",
                 "Password reset & login assistance", "Help with login and password resets",
                 "Password Reset and Login Help"),
              _t("User authentication flows", "Login, sign-up and session refresh requests",
                 "Sign-in troubles and credential recovery"),
              _t("- Users cannot log in or ask for a password reset link",
                 "- The bot sends reset instructions and checks the account email",
                 "- Mentions of expired sessions and SSO redirects",
                 "- Mostly short conversations resolved in one or two turns")),
        Topic("account_lockout", "support_bot", 230, "gpt-4o-mini", 1500, 230, 0.012,
              _t("Account lockout and two-factor issues", "Two-factor authentication and account lockouts",
                 "Locked accounts and 2FA problems", "Account lockouts and two-factor issues"),
              _t("MFA codes not arriving", "Security lock recovery requests",
                 "Users stuck behind too many failed sign-in attempts"),
              _t("- Accounts locked after repeated failed attempts",
                 "- Authenticator or SMS codes not arriving",
                 "- The bot walks users through identity verification",
                 "- Frequently escalated to the security team")),
        Topic("shipping", "support_bot", 280, "gpt-4o-mini", 1600, 220, 0.015,
              _t("Shipping and delivery status", "Delivery and shipping status questions",
                 "Order shipping status inquiries", "Shipping & delivery status",
                 "Shipping and Delivery Status"),
              _t("Package tracking lookups", "Customers chasing late parcels",
                 "Where-is-my-order conversations"),
              _t("- Users ask where their order is or when it will arrive",
                 "- The bot looks up the tracking number and carrier status",
                 "- Complaints about delayed or lost parcels",
                 "- Often includes an order number")),
        Topic("billing", "support_bot", 210, "gpt-4o-mini", 2000, 300, 0.015,
              _t("Billing disputes and duplicate charges", "Duplicate charges and billing disputes",
                 "Billing disputes (duplicate charges)", "Disputed bills and duplicate charges"),
              _t("Unexpected charges on customer invoices", "Payment discrepancy complaints",
                 "Customers contesting what they were billed"),
              _t("- Users report being charged twice or for the wrong plan",
                 "- The bot pulls the invoice history before answering",
                 "- Requests for credits or chargebacks",
                 "- References to card statements and invoice numbers")),
        Topic("warranty_claims", "support_bot", 500, "gpt-4o", 2600, 320, 0.015,
              _t("Warranty claims with photo evidence", "Warranty claims with damage photos",
                 "Photo-based warranty claims", "Warranty claims including photos"),
              _t("Broken product reports with image uploads",
                 "Damage claims submitted through the new claims flow",
                 "Customers filing defect claims with pictures"),
              _t("- Users upload photos of a damaged or defective product",
                 "- The bot checks the purchase date against the warranty period",
                 "- Vision model describes the damage before a decision",
                 "- Launched recently and already a large share of support traffic"),
              latent=True, flat_week=True, main_gens=(0.0, 0.6, 0.4), launch_boost=2.2),
        Topic("account_access", "support_bot", 0, "gpt-4o-mini", 1450, 215, 0.012,
              _t("Account access and sign-in problems", "Sign-in and account access issues",
                 "Problems accessing accounts", "Account access & sign-in problems"),
              _t("Authentication support requests (passwords, 2FA, lockouts)",
                 "Everything that keeps users from signing in"),
              _t("- Users cannot sign in: forgotten passwords, lockouts, missing 2FA codes",
                 "- The bot verifies identity and resets credentials",
                 "- One unified authentication help flow",
                 "- Short conversations, sometimes escalated to security"),
              latent=True),
        # --- coding assistant ---------------------------------------------------------------------
        Topic("py_codegen", "coding_assistant", 360, "claude-3-5-sonnet-20241022", 2400, 700, 0.02,
              _t("Python code generation", "Generating Python code", "Python code generation requests",
                 "Python code writing", "Python Code Generation"),
              _t("Writing new Python functions and scripts",
                 "Users asking the assistant to implement features in Python"),
              _t("- Users describe a task and ask for a Python implementation",
                 "- Answers include full functions with type hints",
                 "- Follow-ups ask to adapt the code to an existing module",
                 "- Mostly single-file scripts and helpers")),
        Topic("py_data", "coding_assistant", 190, "claude-3-5-sonnet-20241022", 2600, 750, 0.02,
              _t("Pandas data-analysis scripts", "Data analysis scripts with pandas",
                 "Pandas dataframe scripts", "Pandas data analysis scripts"),
              _t("Notebook-style data wrangling in Python", "CSV cleanup and aggregation code"),
              _t("- Users ask for pandas code to load, clean and aggregate tables",
                 "- Group-bys, pivots and plots for notebooks",
                 "- Input is usually a CSV or a dataframe description"),
              trace_name="codegen_data", latent=True),
        Topic("py_web", "coding_assistant", 170, "claude-3-5-sonnet-20241022", 2300, 680, 0.02,
              _t("Python web API endpoints", "Web API endpoints in Python",
                 "FastAPI and Django endpoint code", "Python web API endpoint code"),
              _t("Backend route handlers and request validation", "REST service scaffolding in Python"),
              _t("- Users ask for HTTP endpoints, request models and validation",
                 "- FastAPI and Django views with database access",
                 "- Follow-ups add authentication and pagination"),
              trace_name="codegen_web", latent=True),
        Topic("py_review", "coding_assistant", 170, "claude-3-5-sonnet-20241022", 3200, 500, 0.015,
              _t("Python code review", "Reviewing Python code", "Python code review feedback",
                 "Code review of Python changes", "Python Code Review"),
              _t("Pull request critique for Python modules", "Spotting bugs in submitted Python diffs"),
              _t("- Users paste a diff or a module and ask for a review",
                 "- Feedback on naming, error handling and tests",
                 "- Points out bugs and suggests smaller functions")),
        Topic("sql_writing", "coding_assistant", 175, "claude-3-5-sonnet-20241022", 1800, 400, 0.015,
              _t("SQL query writing", "Writing SQL queries", "SQL query authoring help",
                 "SQL query writing help"),
              _t("Joins, CTEs and window functions on request", "Hand-written SQL for application databases"),
              _t("- Users ask for a SQL query against their own schema",
                 "- Joins, CTEs and window functions",
                 "- Postgres dialect most of the time")),
        Topic("unit_tests", "coding_assistant", 180, "claude-3-5-sonnet-20241022", 2800, 900, 0.015,
              _t("Unit test generation", "Generating unit tests", "Unit test writing with pytest",
                 "Unit test generation requests"),
              _t("Test scaffolding for existing functions", "pytest cases and fixtures on demand"),
              _t("- Users paste a function and ask for tests",
                 "- pytest with fixtures and parametrised cases",
                 "- Edge cases and mocks for external calls")),
        # --- RAG search -----------------------------------------------------------------------------
        Topic("docs_qa", "rag_search", 400, "gpt-4o-mini", 3000, 280, 0.012,
              _t("Product documentation Q&A", "Documentation questions and answers", "Q&A over product docs",
                 "Product docs question answering", "Product Documentation Q&A"),
              _t("RAG doc lookups for API setup", "SDK installation and API key questions"),
              _t("- Retrieval span over the docs index followed by one or two generations",
                 "- Questions about SDK installation and API keys",
                 "- Answers cite documentation pages")),
        Topic("product_compare", "rag_search", 170, "gemini-1.5-flash", 3500, 350, 0.012,
              _t("Product and plan comparison", "Comparing products and plans",
                 "Plan and product comparisons", "Product & plan comparison"),
              _t("Which-tier-should-I-pick questions", "Feature matrix lookups across plans"),
              _t("- Users compare plans, tiers or two products",
                 "- Retrieval over pricing and feature pages",
                 "- Answers are tables of differences")),
        # --- text-to-SQL analytics ------------------------------------------------------------------
        Topic("text_to_sql", "sql_analytics", 200, "gpt-4o", 2200, 300, 0.02,
              _t("Text-to-SQL analytics questions", "Analytics questions turned into SQL",
                 "Natural-language analytics to SQL", "Text to SQL analytics questions"),
              _t("Business metrics asked in plain English",
                 "Dashboard questions answered with generated queries"),
              _t("- Users ask business questions in plain English",
                 "- The app looks up the warehouse schema and writes a query",
                 "- The query is executed and the result summarised")),
        # --- agent ------------------------------------------------------------------------------------
        Topic("calendar", "agent", 175, "claude-3-5-sonnet-20241022", 2000, 250, 0.015,
              _t("Calendar scheduling and meeting setup", "Meeting setup and calendar scheduling",
                 "Scheduling meetings on calendars", "Calendar scheduling & meeting setup"),
              _t("Finding time slots across attendees", "Booking rooms and sending invites"),
              _t("- The agent reads calendars and proposes time slots",
                 "- Creates events and sends invitations",
                 "- Handles time zones and rescheduling")),
        Topic("web_research", "agent", 175, "claude-3-5-sonnet-20241022", 4500, 600, 0.02,
              _t("Multi-step web research", "Web research across multiple sources",
                 "Multi-source web research tasks", "Multi-step web research tasks"),
              _t("Agent browsing and summarising web pages", "Competitive research from search results"),
              _t("- The agent searches, fetches several pages and summarises",
                 "- Long contexts and several tool calls per trace",
                 "- Output is a short report with links")),
        Topic("flight_booking", "agent", 170, "gpt-4o", 2400, 300, 0.02,
              _t("Flight search and booking", "Booking and searching flights", "Flight booking requests",
                 "Flight search & booking"),
              _t("Travel itinerary planning with fares", "Airline ticket purchases via the agent"),
              _t("- The agent searches fares for dates and airports",
                 "- Compares options and books the chosen flight",
                 "- Sometimes fails on sold-out fares")),
        # --- first generations (generation level only) --------------------------------------------------
        Topic("support_routing", "support_bot", 0, "gpt-4o-mini", 600, 12, 0.01,
              _t("Support message intent classification", "Intent classification of support messages",
                 "Classifying support messages by intent", "Support message intent routing"),
              _t("Routing incoming tickets to the right flow", "Short triage prompts for the support bot"),
              _t("- One short prompt per support conversation",
                 "- Output is a single intent label",
                 "- Cheap model, tiny outputs"),
              latent=True),
        Topic("agent_planning", "agent", 0, "claude-3-haiku-20240307", 900, 60, 0.01,
              _t("Agent step planning", "Planning next agent steps", "Agent tool-selection planning",
                 "Agent step planning prompts"),
              _t("Choosing which tool to call next", "Short planner prompts before tool calls"),
              _t("- The planner decides the next tool call",
                 "- Output is a JSON plan with one to three steps",
                 "- Runs before every agent task"),
              latent=True),
    )
}


@dataclass(frozen=True)
class Change:
    """One thing that happens to the world on a day (see the module docstring for day numbers)."""

    kind: ChangeKind
    day: int
    # The topic the change is about: the spiking / failing / new / vanishing topic, the topic that
    # splits, or the topic the merged traffic becomes.
    topic: str
    # split: the two topics the traffic becomes; merge: the two topics that become one.
    topics: tuple[str, ...] = ()
    model: str | None = None
    error_rate: float | None = None
    # error_surge: the HTTP status and `$ai_error` of the surge's failed generations (the error behind it;
    # None: they fail like the topic's usual errors, a mix of rate limits, 5xx and timeouts).
    error: tuple[int, str] | None = None
    note: str = ""


@dataclass(frozen=True)
class EvalChange:
    """A change in what the team's evaluations find (generated only with evaluations on).

    pass_rate_drop: from `day`, `judge` passes `app`'s generations with probability `pass_rate`;
    failure_mode: from `day`, a `share` of `judge`'s evaluations of `topic` fail for one new reason,
    `title`, and cluster together (a new cluster)."""

    kind: str
    day: int
    judge: str
    app: str = ""
    topic: str = ""
    pass_rate: float = 1.0
    share: float = 0.0
    title: str = ""
    note: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    changes: tuple[Change, ...] = ()
    eval_changes: tuple[EvalChange, ...] = ()
    # Share of runs x clusters whose title is a heavy rewording rather than a light one.
    heavy_rewording: float = 0.15
    # No change alert is expected: every alert on this scenario is a false positive.
    quiet: bool = False
    extra: dict[str, str] = field(default_factory=dict)


_SPIKE = Change("cost_spike", 7, "shipping", model="gpt-4o",
                note="the order-status flow moves from gpt-4o-mini to gpt-4o: about x14 cost per trace")
_PAYMENTS_DOWN = (502, "UpstreamError: payments provider returned 502 Bad Gateway")
_SURGE = Change("error_surge", 7, "billing", error_rate=0.35, error=_PAYMENTS_DOWN,
                note="the payments provider starts failing: 35% of billing traces have an error")
_NEW = Change("new_cluster", 7, "warranty_claims",
              note="a photo-based warranty-claims flow launches: 1100 traces on launch day, then 500/day "
                   "(gpt-4o, vision + answer)")
_GONE = Change("disappear", 5, "product_compare",
               note="the plan-comparison feature is removed; its cluster fades as the window moves on")
_SPLIT = Change("split", 7, "py_codegen", topics=("py_data", "py_web"),
                note="Python code generation turns into two distinct flows: pandas scripts and web endpoints")
_MERGE = Change("merge", 7, "account_access", topics=("password_login", "account_lockout"),
                note="password and 2FA help become one sign-in flow, clustered as one")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("steady", "Nothing changes beyond day-to-day noise and rewording.", quiet=True),
        Scenario("cost_spike", "One topic switches to an expensive model.", (_SPIKE,)),
        Scenario("error_surge", "One topic's error rate jumps to about 35%.", (_SURGE,)),
        Scenario("new_cluster", "A new high-volume topic appears.", (_NEW,)),
        Scenario("disappear", "A topic stops; its cluster shrinks and vanishes.", (_GONE,)),
        Scenario("split", "One topic becomes two distinct topics.", (_SPLIT,)),
        Scenario("merge", "Two topics become one.", (_MERGE,)),
        Scenario("reword", "Titles are heavily reworded every run; nothing else changes.",
                 heavy_rewording=0.85, quiet=True),
        Scenario(
            "drift",
            "Two weeks of drift: a cost spike, an error surge, a new cluster and a split, on different days.",
            (
                Change("cost_spike", 3, "shipping", model="gpt-4o", note=_SPIKE.note),
                Change("error_surge", 5, "billing", error_rate=0.35, error=_PAYMENTS_DOWN, note=_SURGE.note),
                Change("new_cluster", 8, "warranty_claims", note=_NEW.note),
                Change("split", 10, "py_codegen", topics=("py_data", "py_web"), note=_SPLIT.note),
            ),
            eval_changes=(
                EvalChange("pass_rate_drop", 6, "Helpfulness", app="support_bot", pass_rate=0.45,
                           note="a prompt change makes support answers generic: Helpfulness passes fall"),
                EvalChange("failure_mode", 9, "Hallucination check", topic="docs_qa", share=0.7,
                           title="Answers cite documentation pages that do not exist",
                           note="a retrieval index change: docs answers start citing pages that do not exist"),
            ),
        ),
    )
}

# The alert kinds the monitor is expected to raise for each kind of change (monitor.rules.thresholds),
# the main one first. An error surge may first show as a rise (error_spike), then as a high rate.
EXPECTED_ALERTS: dict[str, tuple[str, ...]] = {
    "cost_spike": ("cost_spike",),
    "error_surge": ("error_rate", "error_spike"),
    "new_cluster": ("new_cluster",),
    "disappear": ("disappeared",),
    "split": ("split",),
    "merge": ("merge",),
}


def _check() -> None:
    """Fail at import on a catalog mistake: the generator writes these strings into JSON unescaped."""
    for t in TOPICS.values():
        assert t.app in APPS, t.id
        assert t.model in MODELS, t.id
        assert t.light and t.heavy and len(t.bullets) >= 2, t.id
        assert t.main_gens is None or abs(sum(t.main_gens) - 1) < 1e-9, t.id
        assert t.launch_boost >= 1.0, t.id
    for a in APPS.values():
        assert a.router_topic is None or a.router_topic in TOPICS, a.id
        assert a.router_model is None or a.router_model in MODELS, a.id
        assert abs(sum(a.main_gens) - 1) < 1e-9 and abs(sum(a.spans) - 1) < 1e-9, a.id
    for s in SCENARIOS.values():
        for e in s.eval_changes:
            assert e.kind in ("pass_rate_drop", "failure_mode") and e.day >= 1, (s.name, e)
            assert (e.app in APPS) if e.kind == "pass_rate_drop" else (e.topic in TOPICS), (s.name, e)
            assert '"' not in e.title and "\\" not in e.title and ":" not in e.judge, (s.name, e)
        for c in s.changes:
            assert c.topic in TOPICS and all(x in TOPICS for x in c.topics), (s.name, c)
            assert c.model is None or c.model in MODELS, (s.name, c)
            assert c.day >= 1, (s.name, c)
    raw = [*APPS, *MODELS, *TOPICS, *(a.lib for a in APPS.values()), *(a.trace_name for a in APPS.values()),
           *(n for a in APPS.values() for n in a.span_names), *(t.trace_name for t in TOPICS.values())]
    assert not any('"' in s or "\\" in s for s in raw)


_check()
