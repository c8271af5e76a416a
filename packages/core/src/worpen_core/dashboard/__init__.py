"""The dashboard: fleet-wide figures the cockpit shows, computed from the other features."""
