"""worpen_proto."""
