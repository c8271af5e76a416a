"""Containers and images on the fleet's Docker engines."""
