"""Agents, their heartbeats, status machine and telemetry."""
