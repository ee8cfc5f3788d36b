"""Engram: core."""
