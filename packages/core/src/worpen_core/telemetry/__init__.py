"""Telemetry history in tiers: raw samples, 1-minute and 1-hour rollups, and series read from them."""
