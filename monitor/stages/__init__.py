"""The stages of one cycle, one module each, in the order of the diagram (monitor/pipeline.py runs them):

    discover -> load (fetch run) -> diff -> measure -> evaluate (rules) -> decide (lifecycle, inhibit,
    silence) -> route -> enqueue (one transaction with the outbox)         ... deliver: monitor/notify/outbox.py

Beside them: `checks` (jobs whose runs stopped, PostHog down: alerts that belong to no run) and `cursor`
(where discovery resumes, and the landing times adaptive polling learns from).

Each is a function over plain values; where a stage needs I/O (the PostHog client, the store) it is
passed in, so a stage is tested with plain values and no server.
"""
