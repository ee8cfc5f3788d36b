"""API keys, roles and who may do what (SPEC §10).

``keys`` holds the key store and the principal a request acts as; ``guard``
decides, in one place, whether a principal may do an action on a space;
``limits`` holds the per-key rate limiter; ``audit`` the audit log writer.
Nothing here imports a transport: REST, gRPC and the CLI are adapters over it.
"""
