"""The local stand-ins for the demo and the tests: a PostHog-compatible server, a Slack endpoint, an SMTP
server, and `cluster-monitor demo` that wires them to a daemon. Nothing in production imports them."""
