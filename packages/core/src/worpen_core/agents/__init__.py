"""Agents connected over the command channel: who is connected, what they can do, and commands to them."""
