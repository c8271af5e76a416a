"""API keys, roles, authentication and the failed-attempt throttle."""
