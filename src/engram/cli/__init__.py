"""Engram: cli."""
