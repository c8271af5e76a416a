"""The cockpit's dashboard over HTTP."""
