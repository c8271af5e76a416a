"""worpen_api."""
