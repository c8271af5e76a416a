"""Notification channels and their deliveries over HTTP."""
