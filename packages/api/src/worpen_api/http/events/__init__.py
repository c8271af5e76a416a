"""The live event feed over HTTP."""
