"""The application shell around the cycle: wiring from config, the HTTP endpoints, config reload."""
