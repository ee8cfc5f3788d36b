"""Engram: api/rest."""
