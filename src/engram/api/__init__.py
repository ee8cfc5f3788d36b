"""Engram: api."""
