"""Agents and heartbeats over HTTP (the lean heartbeat intake included)."""
