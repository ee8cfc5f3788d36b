"""Every setting is documented (SPEC §8): a new field without a row in docs/configuration.md fails here."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from engram.settings import Settings, load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_setting_has_a_row() -> None:
    text = DOC.read_text()
    missing = [f.name for f in fields(Settings) if f"| `{f.name}` |" not in text]
    assert not missing, f"undocumented settings: {missing}"


def test_documented_precedence_holds(tmp_path: Path) -> None:
    cfg = tmp_path / "e.toml"
    cfg.write_text('[server]\nhttp_port = 1111\ngrpc_port = 2222\n[spaces]\ndefault_space = "from-file"\n')
    env = {"ENGRAM_GRPC_PORT": "3333", "ENGRAM_DEFAULT_SPACE": "from-env"}
    s = load_settings(cfg, {"default_space": "from-flag"}, env=env)
    assert (s.http_port, s.grpc_port, s.default_space) == (1111, 3333, "from-flag")
