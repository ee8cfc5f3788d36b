"""Engram: testing."""
