"""The JSON report fails unless every expected section is present, from this run, and passed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engram.testing import report

EXPECTED = ("alpha", "beta", "gamma")


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    monkeypatch.setenv("ENGRAM_TEST_REPORT_DIR", str(tmp_path))
    monkeypatch.setenv("ENGRAM_TEST_RUN_ID", "old")  # restored after the test: start_run overwrites it
    monkeypatch.setenv("ENGRAM_TEST_COMMIT", "old")
    return report.start_run("run-1")


def _write_all() -> None:
    for name in EXPECTED:
        report.write_section(name, [{"name": "c", "violations": []}])


def test_all_sections_of_this_run_passing_pass(run: dict[str, object]) -> None:
    _write_all()
    merged = report.merged(EXPECTED)
    assert merged["passed"] and merged["problems"] == [] and merged["run_id"] == "run-1"
    assert all(s["run_id"] == "run-1" and s["commit"] == run["commit"] for s in merged["sections"].values())


def test_missing_section_fails(run: dict[str, object]) -> None:
    _write_all()
    (report.report_dir() / "beta.json").unlink()
    merged = report.merged(EXPECTED)
    assert not merged["passed"] and merged["problems"] == ["beta: missing"]


def test_stale_section_fails(run: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    _write_all()
    report.start_run("run-2")  # a new run: the files on disk are the previous run's
    report.write_section("alpha", [{"name": "c"}])
    report.write_section("beta", [{"name": "c"}])
    merged = report.merged(EXPECTED)
    assert not merged["passed"]
    assert merged["problems"] == [f"gamma: stale (run run-1, commit {run['commit']})"]
    # same run id, another commit: stale too
    monkeypatch.setenv("ENGRAM_TEST_COMMIT", "another")
    assert {p.split(":")[0] for p in report.merged(EXPECTED)["problems"]} == set(EXPECTED)


def test_stale_section_outside_the_expected_set_is_ignored(run: dict[str, object]) -> None:
    report.write_section("crash_cycles_long", [{"name": "c"}])
    report.start_run("run-2")
    _write_all()
    merged = report.merged(EXPECTED)
    assert merged["passed"] and merged["ignored_stale"] == ["crash_cycles_long"]


def test_failing_section_fails(run: dict[str, object]) -> None:
    _write_all()
    report.write_section("gamma", [{"name": "ok"}, {"name": "bad", "violations": ["leak"]}])
    merged = report.merged(EXPECTED)
    assert not merged["passed"] and merged["problems"] == ["gamma: failed"]
    assert merged["sections"]["gamma"]["failed"] == 1


def test_verdicts_are_computed_not_trusted(run: dict[str, object]) -> None:
    _write_all()
    report.write_section("alpha", [{"name": "c", "passed": True, "error": "crashed"}])
    report.write_section("beta", [])  # checked nothing: proves nothing
    path = report.report_dir() / "gamma.json"
    doc = json.loads(path.read_text())
    doc["checks"][0]["violations"] = ["edited by hand"]  # the file says passed; its checks do not
    path.write_text(json.dumps(doc))
    assert doc["passed"] is True
    merged = report.merged(EXPECTED)
    assert merged["problems"] == ["alpha: failed", "beta: failed", "gamma: failed"]


def test_cli_exit_status(run: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    _write_all()
    assert report.main() == 1  # the default expected set is the multitenant tier's: missing here
    assert json.loads(capsys.readouterr().out)["passed"] is False
