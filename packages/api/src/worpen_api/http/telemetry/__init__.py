"""The fleet's telemetry for Prometheus (and so Grafana)."""
