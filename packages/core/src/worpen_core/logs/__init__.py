"""The central log: domain events rendered as readable lines, and lines shipped by agents."""
