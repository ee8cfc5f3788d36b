"""Engram: api/grpc."""
