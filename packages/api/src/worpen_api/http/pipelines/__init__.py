"""The pipelines over HTTP."""
