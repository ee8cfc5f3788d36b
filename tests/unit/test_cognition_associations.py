"""Explicit associations: create, strengthen, durable, removed with their memories, events."""

from __future__ import annotations

from pathlib import Path

import pytest

from engram.core.models import AssociateInput, ForgetMode, MemoryInput
from engram.errors import InvalidInput, MemoryNotFound
from engram.service import EngramService
from engram.testing import make_service


def service(root: Path) -> EngramService:
    return make_service(root, ["assoc"])


def edges(svc: EngramService) -> dict[tuple[str, str], tuple[float, str]]:
    conn = svc.space("assoc").store.reader()  # type: ignore[union-attr]
    return {
        (a, b): (w, k)
        for a, b, w, k in conn.execute(
            "SELECT s.id, t.id, x.strength, x.kind FROM associations x JOIN memories s ON s.rowid = x.source "
            "JOIN memories t ON t.rowid = x.target"
        )
    }


def test_create_strengthen_persist_and_delete(tmp_path: Path) -> None:
    svc = service(tmp_path)
    space = svc.space("assoc")
    for mid in ("a", "b", "c"):
        space.remember(MemoryInput(id=mid, content=f"memory {mid}"))
    sub = space.events.subscribe(["association"])
    cog = svc.cognition("assoc")
    first = cog.associate(AssociateInput(source_id="a", target_id="b", strength=0.5))
    assert first.strength == 0.5 and first.kind == "explicit" and first.memory_space_id == "assoc"
    second = cog.associate(AssociateInput(source_id="a", target_id="b", strength=0.5))
    assert 0.5 < second.strength < 1.0 and second.lsn > first.lsn  # strengthened, saturating
    cog.associate(AssociateInput(source_id="b", target_id="c", strength=0.4, bidirectional=False))
    event = sub.get_nowait()
    assert event is not None and event.type == "association" and event.data["source_id"] == "a"
    assert event.memory_space_id == "assoc"
    assert edges(svc)[("b", "a")][0] == pytest.approx(0.75)
    assert ("c", "b") not in edges(svc)
    svc.close()

    svc = service(tmp_path)  # durable: reopened from disk
    assert edges(svc)[("a", "b")] == (pytest.approx(0.75), "explicit")
    svc.space("assoc").forget("b", ForgetMode.delete)
    assert edges(svc) == {}  # removed with the memory they joined
    svc.close()


def test_bad_associations_are_rejected(tmp_path: Path) -> None:
    svc = service(tmp_path)
    svc.space("assoc").remember(MemoryInput(id="a", content="alpha"))
    cog = svc.cognition("assoc")
    with pytest.raises(MemoryNotFound):
        cog.associate(AssociateInput(source_id="a", target_id="missing"))
    with pytest.raises(InvalidInput):
        cog.associate(AssociateInput(source_id="a", target_id="a"))
    svc.close()
