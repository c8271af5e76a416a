"""CI/CD pipelines: definitions, runs of their stages as containers on the fleet, logs and secrets."""
