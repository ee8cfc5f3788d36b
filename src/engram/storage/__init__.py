"""Engram: storage."""
