"""Settings: defaults < TOML < ENGRAM_* environment < overrides; immutable; validated."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engram.errors import InvalidInput
from engram.settings import Settings, load_settings


def test_defaults() -> None:
    s = load_settings(use_env=False)
    assert s == Settings()
    assert s.durability == "fsync" and s.auto_create_spaces is False and s.default_space == "default"
    assert s.resolved_state_file == Path("./engram-data") / "engram.state.json"


def test_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "engram.toml"
    cfg.write_text('exact_search_max = 10\nmax_spaces = 7\n[server]\nhttp_port = 1111\n')
    env = {
        "ENGRAM_MAX_SPACES": "8",
        "ENGRAM_BOOTSTRAP_SPACES": "aaa, bbb",
        "ENGRAM_AUTO_CREATE_SPACES": "yes",
    }
    s = load_settings(cfg, overrides={"max_spaces": 9, "log_level": None}, env=env)
    assert s.exact_search_max == 10  # file
    assert s.http_port == 1111  # file table
    assert s.bootstrap_spaces == ("aaa", "bbb")  # env
    assert s.auto_create_spaces is True  # env
    assert s.max_spaces == 9  # override beats env and file
    assert s.log_level == "info"  # None overrides are ignored


def test_config_file_from_env(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('default_space = "main"\n')
    assert load_settings(env={"ENGRAM_CONFIG": str(cfg)}).default_space == "main"


def test_immutable_and_replace() -> None:
    s = load_settings(use_env=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_spaces = 3  # type: ignore[misc]
    t = s.replace(max_spaces=3, data_dir="/tmp/x")
    assert t.max_spaces == 3 and t.data_dir == Path("/tmp/x") and s.max_spaces == 100_000


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"durability": "sometimes"}, "durability must be one of"),
        ({"max_spaces": 0}, "max_spaces must be positive"),
        ({"max_spaces": "many"}, "expects an integer"),
        ({"auto_create_spaces": "perhaps"}, "expects true/false"),
        ({"spreading_decay": "x"}, "expects a number"),
        ({"no_such_setting": 1}, "unknown setting"),
    ],
)
def test_invalid_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        load_settings(overrides=overrides, use_env=False)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_settings(tmp_path / "missing.toml", use_env=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(InvalidInput, match="not valid TOML"):
        load_settings(bad, use_env=False)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'blue'\n")
    with pytest.raises(InvalidInput, match="unknown setting 'colour'"):
        load_settings(unknown, use_env=False)


def test_env_ignored_when_asked() -> None:
    assert load_settings(env={"ENGRAM_MAX_SPACES": "5"}, use_env=False).max_spaces == 100_000
