"""Domain events: their base, the bus port, and the journal that keeps them."""
