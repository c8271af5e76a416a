"""What every feature uses: errors, ids, listings, streams, the clock and unit-of-work ports."""
