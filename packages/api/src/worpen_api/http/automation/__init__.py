"""Automation over HTTP: rules, dry runs, manual runs, backtests and the record of runs."""
