"""Interactive terminals over WebSocket."""
