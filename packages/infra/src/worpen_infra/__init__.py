"""worpen_infra."""
