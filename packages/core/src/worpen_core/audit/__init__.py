"""The audit trail of every operation that changes something."""
