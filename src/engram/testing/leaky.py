"""A deliberately leaky Engram, for proving that the isolation matrix catches leaks.

    LEAK_KIND=get python -m engram.testing.leaky start --data-dir D --http-port 0 --grpc-port 0

This is the normal ``engram`` command with **one** engine function
monkeypatched (chosen by ``LEAK_KIND``) so that it also reads from a sibling
space. Production code has no leak hooks: the patch is applied here, in the
test-only entry point, before the CLI runs. Kinds:

``get``      ``MemorySpace.row_by_id`` falls back to the sibling when the id is absent
``recall``   recall results are merged with the sibling's results for the same cue
``list``     ``MemorySpace.list`` appends the sibling's memories
``count``    ``MemorySpace.count`` and introspection add the sibling's memory count
``events``   every published event is also delivered to the sibling's subscribers
``cognition``recognition also matches the sibling's memories
``beliefs``  listing beliefs appends the sibling's beliefs
``consolidation`` consolidation clusters the sibling's episodes along with its own

The sibling of a space is the next loaded space (sorted by id, cyclically)
other than the default space. ``EngramProcess.start(..., module="engram.testing.leaky",
env={"LEAK_KIND": "get"})`` starts one from tests.

``LEAK_KIND=per-space`` plants every kind at once, each only in the spaces named for it: a space
``leak-<kind>-<n>`` leaks that kind, and its siblings are the spaces of its group (its id without
the last ``-<n>``; ``leak-recall-mean-0`` is in group ``leak-recall-mean``). Every other space is
served correctly. One server then demonstrates all kinds (the tests start one, not one per kind).
"""

from __future__ import annotations

import os
import sys
from typing import Any

_REGISTRIES: list[Any] = []
KINDS = ("get", "recall", "list", "count", "events", "cognition", "beliefs", "consolidation")
PER_SPACE = "per-space"
_MODE: list[str] = []  # the installed LEAK_KIND: one kind everywhere, or PER_SPACE


def _group(space_id: str) -> str:
    return space_id.rsplit("-", 1)[0]


def _sibling(space_id: str, kind: str) -> Any | None:
    """The space ``space_id`` leaks ``kind`` from, or None when it does not leak that kind."""
    per_space = _MODE == [PER_SPACE]
    if per_space and not space_id.startswith(f"leak-{kind}-"):
        return None
    for reg in _REGISTRIES:
        ids = sorted(i for i in reg.known_ids() if i != reg.settings.default_space)
        if per_space:
            ids = [i for i in ids if _group(i) == _group(space_id)]
        if space_id not in ids or len(ids) < 2:
            continue
        sib = ids[(ids.index(space_id) + 1) % len(ids)]
        return reg.get(sib)
    return None


def install(kind: str) -> None:
    """Plant ``kind`` in every space, or (``per-space``) every kind in the spaces named for it."""
    if kind != PER_SPACE and kind not in KINDS:
        raise SystemExit(f"LEAK_KIND must be one of {', '.join(KINDS)} or {PER_SPACE}; got {kind!r}")
    _MODE[:] = [kind]
    _track_registries()
    for k in KINDS if kind == PER_SPACE else (kind,):
        _install(k)


def _track_registries() -> None:
    from engram.spaces import registry as registry_mod

    orig_init = registry_mod.SpaceRegistry.__init__

    def init(self: Any, *a: Any, **kw: Any) -> None:
        orig_init(self, *a, **kw)
        _REGISTRIES.append(self)

    registry_mod.SpaceRegistry.__init__ = init  # type: ignore[method-assign]


def _install(kind: str) -> None:
    from engram.core.space import MemorySpace
    from engram.errors import MemoryNotFound

    if kind == "get":
        orig_row = MemorySpace.row_by_id

        def row_by_id(self: Any, memory_id: str) -> Any:
            try:
                return orig_row(self, memory_id)
            except MemoryNotFound:
                sib = _sibling(self.id, "get")
                if sib is None:
                    raise
                return orig_row(sib, memory_id)

        MemorySpace.row_by_id = row_by_id  # type: ignore[method-assign]
    elif kind == "recall":
        import engram.service as service_mod

        # Patches the service's private import on purpose: this is the fault being injected.
        orig_recall = service_mod._recall  # type: ignore[attr-defined]

        def recall(space: Any, cue: Any) -> Any:
            res = orig_recall(space, cue)
            sib = _sibling(space.id, "recall")
            if sib is not None:
                other = orig_recall(sib, cue)
                res.memories.associated.extend(other.memories.vivid + other.memories.associated)
            return res

        service_mod._recall = recall  # type: ignore[attr-defined]
    elif kind == "list":
        orig_list = MemorySpace.list

        def list_(self: Any, *a: Any, **kw: Any) -> Any:
            page = orig_list(self, *a, **kw)
            sib = _sibling(self.id, "list")
            if sib is not None and page.next_cursor is None:
                page.memories.extend(orig_list(sib, None, 1).memories)
            return page

        MemorySpace.list = list_  # type: ignore[method-assign]
    elif kind == "count":
        orig_count = MemorySpace.count

        def count(self: Any, *, strict: bool = False) -> int:
            sib = _sibling(self.id, "count")
            return orig_count(self, strict=strict) + (1 if sib is not None else 0)

        MemorySpace.count = count  # type: ignore[method-assign]
        from engram.cognition import introspection

        orig_intro = introspection.introspect

        def introspect(space: Any) -> Any:
            st = orig_intro(space)
            if _sibling(space.id, "count") is not None:
                st.memories += 1
            return st

        introspection.introspect = introspect
    elif kind == "events":
        from engram.core.events import EventBus

        orig_publish = EventBus.publish_many  # EventBus.publish goes through it too

        def publish_many(self: Any, items: Any) -> None:
            items = list(items)
            orig_publish(self, items)
            if getattr(self, "_leaky_forwarding", False):
                return
            sib = _sibling(self.memory_space_id, "events") if hasattr(self, "memory_space_id") else None
            if sib is not None and sib.events is not self:
                sib.events._leaky_forwarding = True
                try:
                    orig_publish(sib.events, items)
                finally:
                    sib.events._leaky_forwarding = False

        EventBus.publish_many = publish_many  # type: ignore[method-assign]
    elif kind == "cognition":
        from engram.cognition import api as cog_api

        orig_recognize = cog_api.SpaceCognition.recognize

        def recognize(self: Any, item: Any) -> Any:
            res = orig_recognize(self, item)
            sib = _sibling(self.space.id, "cognition")
            if sib is not None:
                res.matches.extend(orig_recognize(sib.attached(cog_api.SpaceCognition), item).matches)
            return res

        cog_api.SpaceCognition.recognize = recognize  # type: ignore[method-assign]
    elif kind == "beliefs":
        from engram.cognition import api as cog_api

        orig_list_beliefs = cog_api.SpaceCognition.list_beliefs

        def list_beliefs(self: Any, *a: Any, **kw: Any) -> Any:
            page = orig_list_beliefs(self, *a, **kw)
            sib = _sibling(self.space.id, "beliefs")
            if sib is not None:
                page.beliefs.extend(orig_list_beliefs(sib.attached(cog_api.SpaceCognition), *a, **kw).beliefs)
            return page

        cog_api.SpaceCognition.list_beliefs = list_beliefs  # type: ignore[method-assign]
    elif kind == "consolidation":
        import numpy as np

        from engram.cognition import consolidation

        orig_snapshot = consolidation.snapshot

        def snapshot(space: Any) -> Any:
            snap = orig_snapshot(space)
            sib = _sibling(space.id, "consolidation")
            if sib is None:
                return snap
            other = orig_snapshot(sib)
            # The sibling's episodes join the clustering (their rowids made negative so they never
            # collide); the write step drops what is not live here, the replay shows them anyway.
            return consolidation.Snapshot(
                snap.rowids + [-r for r in other.rowids],
                snap.ids + other.ids,
                snap.contents + other.contents,
                snap.lsns + other.lsns,
                np.concatenate([snap.vectors, other.vectors]),
            )

        consolidation.snapshot = snapshot


def main() -> None:
    install(os.environ.get("LEAK_KIND", "get"))
    from engram.cli.main import cli

    sys.argv[0] = "engram"
    cli(prog_name="engram")


if __name__ == "__main__":
    main()
