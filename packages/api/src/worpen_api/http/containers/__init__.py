"""Containers, images and engines over HTTP."""
