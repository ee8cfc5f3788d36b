"""Schema 1 -> 2: episode fields become full-text searchable in spaces written by 0.1.0-dev."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from engram.cognition.recall import recall
from engram.core.models import Cue, EpisodeInput
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry
from engram.storage.eventlog import LAST_SEQ, read_after, trimmed_upto
from engram.storage.sqlite_store import SCHEMA_VERSION

V1_TRIGGERS = """
DROP TRIGGER memories_fts_ai; DROP TRIGGER memories_fts_ad; DROP TRIGGER memories_fts_au;
CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts(rowid, content, tags) VALUES (new.rowid, new.content, new.tags);
END;
CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, tags)
        VALUES ('delete', old.rowid, old.content, old.tags);
    DELETE FROM associations WHERE source = old.rowid OR target = old.rowid;
END;
CREATE TRIGGER memories_au AFTER UPDATE OF content, tags ON memories BEGIN
    INSERT INTO memories_fts(memories_fts, rowid, content, tags)
        VALUES ('delete', old.rowid, old.content, old.tags);
    INSERT INTO memories_fts(rowid, content, tags) VALUES (new.rowid, new.content, new.tags);
END;
INSERT INTO memories_fts(memories_fts) VALUES ('rebuild');
UPDATE meta SET value = '1' WHERE key = 'schema_version';
"""


def _episode(i: int) -> EpisodeInput:
    return EpisodeInput(when=datetime(2026, 1, 1 + i, tzinfo=UTC), what=f"morning coffee number {i}",
                        content="a drink", where_location="corner cafe", who=["sam"])


def test_version_1_space_is_reindexed_on_open(tmp_path: Path) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path, "bootstrap_spaces": "old-space"}, use_env=False)
    reg = SpaceRegistry(settings)
    space = reg.get("old-space")
    for i in range(3):
        space.remember(_episode(i))
    reg.close()
    db = tmp_path / "old-space" / "space.db"
    conn = sqlite3.connect(db)
    conn.executescript(V1_TRIGGERS)
    conn.close()

    reg = SpaceRegistry(settings)
    space = reg.get("old-space")
    assert space.healthy
    found = recall(space, Cue(query="coffee", max_results=10))
    assert len(found.memories.vivid) + len(found.memories.associated) == 3
    space.remember(_episode(3))  # new writes go through the version-2 triggers
    after = recall(space, Cue(query="cafe", max_results=10))
    assert len(after.memories.vivid) + len(after.memories.associated) == 4
    reg.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(
            SCHEMA_VERSION)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert not names & {"memories_ai", "memories_ad", "memories_au"}
        conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
    finally:
        conn.close()


def test_episode_fields_are_found_by_text_and_forgotten_with_the_row(tmp_path: Path) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path, "bootstrap_spaces": "eps"}, use_env=False)
    reg = SpaceRegistry(settings)
    space = reg.get("eps")
    receipt = space.remember(_episode(0))
    for query in ("coffee", "corner", "sam"):
        hits = recall(space, Cue(query=query))
        assert [it.memory.id for it in hits.memories.vivid + hits.memories.associated] == [
            receipt.memory_id
        ], query
    from engram.core.models import ForgetMode

    space.forget(receipt.memory_id, ForgetMode.delete)
    assert not recall(space, Cue(query="coffee")).memories.vivid
    reg.close()
    conn = sqlite3.connect(tmp_path / "eps" / "space.db")
    try:
        conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")
    finally:
        conn.close()


V2_DOWNGRADE = """
DROP INDEX memories_expires;
ALTER TABLE memories DROP COLUMN expires_at;
DROP TABLE events;
DELETE FROM meta WHERE key = 'event_log_trimmed';
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"""


def test_version_2_space_gains_event_log_and_expiry_on_open(tmp_path: Path) -> None:
    """Schema 2 -> 3: ``expires_at`` is added (guarded, idempotent), the event log is created, and
    the writes the log never saw are marked as trimmed (a resume from before them is a reset)."""
    settings = load_settings(overrides={"data_dir": tmp_path, "bootstrap_spaces": "old-space"}, use_env=False)
    reg = SpaceRegistry(settings)
    space = reg.get("old-space")
    for i in range(3):
        space.remember(_episode(i))
    old_last = space.last_lsn
    reg.close()
    db = tmp_path / "old-space" / "space.db"
    conn = sqlite3.connect(db)
    conn.executescript(V2_DOWNGRADE)
    conn.close()
    for _ in range(2):  # the second open finds schema 3 and changes nothing
        reg = SpaceRegistry(settings)
        space = reg.get("old-space")
        assert space.healthy
        assert space.list().total == 3
        reg.close()
    reg = SpaceRegistry(settings)
    space = reg.get("old-space")
    receipt = space.remember(EpisodeInput(when=datetime(2026, 2, 1, tzinfo=UTC), what="tea", ttl_seconds=60))
    assert space.get(receipt.memory_id).expires_at is not None
    assert space.store is not None
    reader = space.store.reader()
    assert trimmed_upto(reader) == (old_last, LAST_SEQ)
    events, _, _ = read_after(reader, (0, -1), 10, None)
    assert [(e.type, e.lsn) for e in events] == [("stored", receipt.lsn)]
    reg.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
    finally:
        conn.close()
