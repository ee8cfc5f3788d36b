"""Memory semantics above the core: recall's ranking and spreading, association,
consolidation, completion, recognition, reminiscence and introspection.

The registry attaches one :class:`~engram.cognition.api.SpaceCognition` to every
space it opens (``space.attach``); the core never imports this package.
"""
