"""Domain events: their base, the bus port and the live feed."""
