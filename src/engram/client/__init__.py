"""Engram: client."""
