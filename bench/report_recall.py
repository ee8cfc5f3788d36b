"""Report sections of issue 15: Engram's server beside Chroma's, recall scaling, text queries.

Called by bench/report.py; each function takes a step's results (a dict, empty when the
step did not run) and returns markdown lines. The profile notes ("where a recall's time
goes") are prose measured by hand with py-spy and cProfile and kept in
bench/notes/recall_profile.md; they are included verbatim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOTES = Path(__file__).resolve().parent / "notes" / "recall_profile.md"


def _count(rounds: Any) -> int:
    """recall_scaling.json's ``rounds``: the per-round results (a list; older files: the count)."""
    return rounds if isinstance(rounds, int) else len(rounds)


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]
    return out


def headlines(peer: dict[str, Any], scaling: dict[str, Any], text: dict[str, Any]) -> list[str]:
    out = []
    p = peer.get("ratios_engram_over_chroma")
    if p:
        e, c = peer["engram"], peer["chroma"]
        out.append(
            f"Engram/Chroma servers ({peer.get('memories'):,} x {peer.get('dim')}, same aiohttp client): "
            "recall "
            f"P50 1 client x{_f(p.get('recall_1client_p50'))} ({_f(e['recall_1client']['p50_ms'])} vs "
            f"{_f(c['recall_1client']['p50_ms'])} ms), QPS 16 clients x{_f(p.get('recall_16clients_qps'))} "
            f"({_f(e['recall_16clients']['per_s'])} vs {_f(c['recall_16clients']['per_s'])}/s), recall@10 "
            f"{_f(e.get('recall_at_10'), 4)} vs {_f(c.get('recall_at_10'), 4)}, single ingest "
            f"x{_f(p.get('single_ingest_throughput'))} "
            f"(base64 x{_f(p.get('single_ingest_throughput_base64'))}), "
            f"batched ingest x{_f(p.get('batched_ingest_throughput'))}, RSS x{_f(p.get('rss'))}, disk "
            f"x{_f(p.get('disk'))}."
        )
    s = scaling.get("summary")
    if s:
        parts = [f"{k.replace('_', ' ')} x{_f(v.get('ratio_16_over_1_median'))}" for k, v in s.items()]
        out.append(
            "Recall throughput, 16 callers over 1 (median of rounds, target >= 1.6): "
            + ", ".join(parts)
            + "."
        )
    if text.get("recall"):
        wpq = text["words_per_question"]
        out.append(
            f"Text question ({wpq['min']}-{wpq['max']} words) at "
            f"{text['memories']:,} memories, in-process: P50 {_f(text['recall']['p50_ms'])} ms (target < 3), "
            f"CPU {_f(text['recall'].get('cpu_ms_per_call'))} ms per recall, recall@10 "
            f"{_f(text.get('recall_at_10'), 4)}."
        )
    return out


def section_peer_server(d: dict[str, Any], status: str) -> list[str]:
    lines = ["## Engram's server beside Chroma's server (bench/peer_chroma_server.py)", ""]
    if not d:
        return [*lines, f"No results: {status}.", ""]
    e, c = d["engram"], d["chroma"]
    lines += [
        f"{d['memories']:,} clustered unit vectors x {d['dim']}; `engram start` (fsync, embedder none) and "
        f"`chroma run` (chromadb {d.get('chromadb_version')}), each on loopback in its own process; one "
        'aiohttp client against both, in one run. Engram recalls with `rank: "similarity"`.',
        "",
    ]
    rows = []

    def phase(name: str, label: str, key: str = "per_s") -> None:
        ev, cv = e.get(name) or {}, c.get(name) or {}
        rows.append(
            [
                label,
                ev.get(key, ev.get("status")),
                cv.get(key),
                ev.get("p50_ms"),
                cv.get("p50_ms"),
                ev.get("p99_ms"),
                cv.get("p99_ms"),
            ]
        )

    phase("single_ingest", "single ingest, records/s (32 writers, JSON floats)")
    rows.append(
        [
            "single ingest, Engram with base64 vectors",
            e["single_ingest_base64"]["per_s"],
            None,
            e["single_ingest_base64"]["p50_ms"],
            None,
            e["single_ingest_base64"]["p99_ms"],
            None,
        ]
    )
    phase("batched_ingest", "batched ingest, records/s (256 per call)", "records_per_s")
    phase("recall_1client", "recall by embedding, 1 client, QPS")
    phase("recall_16clients", "recall by embedding, 16 clients, QPS")
    lines += _table(
        ["", "Engram", "Chroma", "Engram P50 ms", "Chroma P50 ms", "Engram P99 ms", "Chroma P99 ms"], rows
    )
    lines += [
        "",
        *_table(
            ["", "Engram", "Chroma"],
            [
                ["recall@10 against exact float32 search", e.get("recall_at_10"), c.get("recall_at_10")],
                [
                    "recall QPS, 16 clients over 1",
                    e.get("recall_scaling_16_over_1"),
                    c.get("recall_scaling_16_over_1"),
                ],
                ["server RSS after the run, MB", e.get("rss_mb"), c.get("rss_mb")],
                ["disk, MB", e.get("disk_mb"), c.get("disk_mb")],
            ],
        ),
        "",
    ]
    lines += [
        "Ratios Engram/Chroma: "
        + ", ".join(f"{k} {_f(v)}" for k, v in (d.get("ratios_engram_over_chroma") or {}).items()),
        "",
    ]
    return lines


def section_scaling(d: dict[str, Any], status: str) -> list[str]:
    lines = ["## Recall with 1 and 16 callers (bench/recall_scaling.py)", ""]
    if not d:
        return [*lines, f"No results: {status}.", ""]
    lines += [
        f"{d['memories']:,} x {d['dim']} in one space, {_count(d['rounds'])} interleaved rounds of "
        f"{d['seconds']} s per phase; ratios per round, then the median. Rows ending `_workersN`: "
        "the same measurement on a server with `read_workers = N` (recall answered by worker "
        "processes: docs/configuration.md). The CPU table below is the server alone's "
        "(`read_workers = 0`); the JSON's `rounds_by_config` has the workers' rounds, their CPU included.",
        "",
    ]
    rows = []
    for k, v in d["summary"].items():
        rows.append(
            [
                k,
                v["per_s_1"],
                v["per_s_16"],
                v["p50_ms_1"],
                v["p50_ms_16"],
                v["p99_ms_16"],
                ", ".join(_f(x) for x in v["ratio_16_over_1_per_round"]),
                v["ratio_16_over_1_median"],
            ]
        )
    lines += _table(
        [
            "transport / cue",
            "1 caller /s",
            "16 callers /s",
            "P50 1 ms",
            "P50 16 ms",
            "P99 16 ms",
            "16/1 per round",
            "16/1 median",
        ],
        rows,
    )
    cpu = []
    for name, v in (d.get("rounds") or [{}])[0].items():
        cpu.append([name, v.get("server_cpu_ms_per_call"), v.get("client_cpu_ms_per_call")])
    if cpu:
        lines += [
            "",
            "Server and client CPU per call (first round; load-independent, unlike rates):",
            "",
            *_table(["phase", "server CPU ms", "client CPU ms"], cpu),
        ]
    return [*lines, ""]


def section_text(d: dict[str, Any], status: str) -> list[str]:
    lines = ["## Text questions at 10k memories (bench/text_query.py)", ""]
    if not d:
        return [*lines, f"No results: {status}.", ""]
    lines += _table(
        ["figure", "value"],
        [
            ["memories", d["memories"]],
            ["questions", d["questions"]],
            ["words per question", f"{d['words_per_question']['min']}-{d['words_per_question']['max']}"],
            ["recall() P50 ms", d["recall"]["p50_ms"]],
            ["recall() P99 ms", d["recall"]["p99_ms"]],
            ["recall() CPU ms per call", d["recall"].get("cpu_ms_per_call")],
            ["full-text stage P50 ms", d["text_stage"]["p50_ms"]],
            ["full-text stage CPU ms per call", d["text_stage"].get("cpu_ms_per_call")],
            ["recall@10 of the evidence turns", d["recall_at_10"]],
            ["example question", d.get("example_question", "")],
        ],
    )
    return [*lines, ""]


def section_profile() -> list[str]:
    if not NOTES.exists():
        return []
    return [*NOTES.read_text().rstrip().splitlines(), ""]
