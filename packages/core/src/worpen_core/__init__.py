"""worpen_core: Worpen's domain. Entities, events, ports and use cases, on the standard library only."""
