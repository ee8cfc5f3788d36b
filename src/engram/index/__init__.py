"""Engram: index."""
