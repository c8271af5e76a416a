"""Event buses."""
