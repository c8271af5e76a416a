"""Incidents: what went wrong where, deduplicated while open, remediated, resolved by hand or by itself."""
