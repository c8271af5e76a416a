"""Self-healing: rules whose scripts, run in a sandbox, plan remediations that Worpen applies."""
