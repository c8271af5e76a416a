"""Health, metrics and the engines' status over HTTP."""
