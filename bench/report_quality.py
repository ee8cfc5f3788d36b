"""The "Recall quality" part of docs/benchmarks.md (bench/quality.py's results).

bench/report.py calls these: the section, its plot, its targets and a headline. Every
figure is read from quality.json; what is missing is said to be missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report import NA, fmt, table

KINDS = ("single-hop", "multi-hop", "temporal", "paraphrase")
BASELINES = ("bm25", "dense", "rrf")
LABELS = {
    "bm25": "BM25 (bm25s)",
    "dense": "dense (same model)",
    "rrf": "RRF of BM25 + dense",
}


def _label(system: str) -> str:
    return LABELS.get(system, system)


def _cell(recall: dict[str, Any], kind: str) -> str:
    v = recall.get(kind) or {}
    return " / ".join(_r(v.get(f"r@{k}")) for k in (5, 10, 25))


def _r(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else NA


def _pct(v: Any) -> str:
    return f"{v:+.1f} %" if isinstance(v, (int, float)) else NA


def embedder_table(entry: dict[str, Any]) -> str:
    rows = []
    for name, v in (entry.get("systems") or {}).items():
        rec = v.get("recall") or {}
        lat = v.get("latency") or {}
        twin = v.get("same_request_as")
        rows.append(
            [
                _label(name) + (f" (the same Cue as {twin}: answered once)" if twin else ""),
                *[_cell(rec, k) for k in (*KINDS, "overall")],
                lat.get("mean_ms"),
                lat.get("p50_ms"),
            ]
        )
    head = ["system", *[f"{k} r@5 / 10 / 25" for k in KINDS], "overall r@5 / 10 / 25", "mean ms", "P50 ms"]
    return table(head, rows)


def derived_table(entry: dict[str, Any]) -> str:
    d = entry.get("derived") or {}
    rows = []
    for kind in ("overall", "multi-hop", "paraphrase", "single-hop", "temporal"):
        g = d.get(f"default_vs_best_baseline.{kind}")
        if g:
            rows.append(
                [
                    f"engram default vs best baseline, {kind}",
                    f"{_r(g['ours'])} vs {_r(g['baseline'])} ({_label(g['best_baseline'])})",
                    _pct(g.get("gain_pct")),
                    f"{g['ci95_pct'][0]:+.1f} .. {g['ci95_pct'][1]:+.1f} %",
                    g.get("questions"),
                ]
            )
    for mode in ("spreading", "hybrid"):
        g = d.get(f"{mode}_vs_similarity.multi-hop")
        if g:
            rows.append(
                [
                    f"cognitive {mode} vs cognitive similarity, multi-hop",
                    f"{_r(g['ours'])} vs {_r(g['baseline'])} ({g['delta']:+.3f})",
                    _pct(g.get("gain_pct")),
                    f"{g['ci95_pct'][0]:+.1f} .. {g['ci95_pct'][1]:+.1f} %",
                    g.get("questions"),
                ]
            )
    return table(
        ["comparison at recall@10", "recall@10", "relative gain", "95 % bootstrap", "questions"], rows
    )


def section_quality(d: dict[str, Any], status: str) -> list[str]:
    lines = ["## Recall quality (bench/quality.py, in-process)", ""]
    if not d or not d.get("embedders"):
        return [*lines, f"No results: {status}.", ""]
    ds, p = d.get("dataset") or {}, d.get("params") or {}
    kinds = ds.get("by_kind") or {}
    words = ds.get("words_per_turn") or {}
    lines += [
        f"A seeded conversational-memory data set (bench/quality_data.py, seed {p.get('seed')}, "
        f"`{ds.get('file', 'quality_dataset.json')}` beside the results): {fmt(ds.get('conversations'))} "
        f"conversations between two people, {fmt(ds.get('sessions'))} dated sessions, {fmt(ds.get('turns'))} "
        f"turns ({fmt(words.get('min'))}-{fmt(words.get('max'))} words, mean {fmt(words.get('mean'))}), "
        f"{fmt(ds.get('questions'))} questions: "
        + ", ".join(f"{fmt(kinds.get(k))} {k}" for k in KINDS)
        + f"; {fmt(ds.get('evidence_turns_per_question'))} evidence turns per question on average. "
        "Each speaker has a few storylines (a pet, a job, a trip, an injury...) told over several sessions, "
        "often in answer to the other's question, with later turns naming only the entity; small talk fills "
        "the rest. Multi-hop evidence spans two or more sessions; temporal questions need the session date; "
        "paraphrase questions share no content word with their evidence (stopwords and suffix stemming; the "
        "speakers' names do not count).",
        "",
        "One conversation per space, stored turn by turn as episodes (content = the turn, when = its time, "
        "who = the speaker); each question asked once as its bare text, top 25. recall@k is the share of a "
        "question's evidence turns in the top k, averaged. Baselines over the same turns, indexed as "
        f"`{p.get('baseline_document', NA)}`: BM25 (bm25s, English stopwords, Snowball stemming), dense "
        f"(the same embedder as Engram, exact cosine), and reciprocal-rank fusion of the two (k = "
        f"{p.get('rrf_k', NA)}). Each Engram configuration answers from its own copy of the loaded spaces "
        "(recall strengthens what it returns). Latency is per question, in-process, on this machine's shared "
        "2 cores.",
        "",
    ]
    if d.get("complete") is False:
        lines += [
            "**Partial run**: it stopped before every embedder was measured; the embedders below are the "
            "ones it finished.",
            "",
        ]
    for name, entry in d["embedders"].items():
        load = entry.get("engram_load") or {}
        emb = load.get("space_embedder") or {}
        lines += [
            f"### Embedder {name} ({entry.get('provider')}/{entry.get('model') or emb.get('model') or NA})",
            "",
            f"Engram: {fmt(load.get('ingest_seconds'))} s to store every turn, "
            f"{fmt(load.get('until_embedded_seconds'))} s until all were embedded "
            f"(space embedder {emb.get('provider', NA)}/{emb.get('model', NA)}). "
            + (
                f"Dense arm unavailable: {entry['dense_unavailable']}."
                if entry.get("dense_unavailable")
                else f"Dense and RRF rows use {entry.get('dense_embedder', NA)}."
            ),
            "",
            embedder_table(entry),
            "",
        ]
        if entry.get("derived"):
            lines += [derived_table(entry), ""]
    return lines


def plot_quality(d: dict[str, Any], path: Path, plt: Any, embedder: str = "local") -> Path | None:
    """Grouped bars: recall@10 per question kind (and overall), one bar per system."""
    entry = (d.get("embedders") or {}).get(embedder)
    if not entry or not entry.get("systems"):
        return None
    systems = list(entry["systems"])
    groups = [*KINDS, "overall"]
    fig, ax = plt.subplots(figsize=(10, 5.2))
    width = 0.8 / len(systems)
    grey = iter(("#9e9e9e", "#bdbdbd", "#757575"))
    for i, name in enumerate(systems):
        rec = entry["systems"][name].get("recall") or {}
        ys = [(rec.get(g) or {}).get("r@10") or 0.0 for g in groups]
        colour = next(grey) if name in BASELINES else f"C{i - sum(s in BASELINES for s in systems)}"
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(groups))]
        ax.bar(xs, ys, width, label=_label(name), color=colour, edgecolor="white", linewidth=0.5)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall@10")
    n = (d.get("dataset") or {}).get("questions")
    ax.set_title(f"Recall@10 by question kind ({embedder} embedder, {fmt(n)} questions)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def quality_targets(d: dict[str, Any]) -> list[tuple[str, Any, bool | None, str, str]]:
    """(target, measured, met, unit, source) for the report's targets table."""
    t = d.get("targets") or {}
    src = "quality, local embedder"

    def row(key: str, name: str, unit: str) -> tuple[str, Any, bool | None, str, str]:
        v = t.get(key) or {}
        measured = v.get("measured")
        return name, measured, v.get("met"), unit, src if measured is not None else f"not measured ({src})"

    return [
        row("default_vs_best_baseline_overall_gain_pct",
            "default recall beats the best baseline by >= 10 % relative recall@10, overall", " %"),
        row("default_vs_best_baseline_multi-hop_gain_pct",
            "... and by more on multi-hop (gain >= 10 % and > the overall gain)", " %"),
        row("default_vs_best_baseline_paraphrase_gain_pct",
            "... and by more on paraphrase (gain >= 10 % and > the overall gain)", " %"),
        row("spreading_minus_similarity_multi_hop_r10",
            "spreading measurably better than similarity on multi-hop (recall@10 >= +0.02)", " (r@10 delta)"),
        row("hybrid_minus_similarity_multi_hop_r10",
            "hybrid measurably better than similarity on multi-hop (recall@10 >= +0.02)", " (r@10 delta)"),
    ]  # fmt: skip


def quality_headline(d: dict[str, Any]) -> str | None:
    entry = (d.get("embedders") or {}).get("local") or {}
    g = (entry.get("derived") or {}).get("default_vs_best_baseline.overall")
    if not g:
        return None
    parts = [
        f"Recall quality (local embedder, {fmt(g.get('questions'))} questions): Engram's default recall@10 "
        f"{_r(g['ours'])} against {_r(g['baseline'])} for the best baseline "
        f"({_label(g['best_baseline'])}), "
        f"{_pct(g.get('gain_pct'))}"
    ]
    for kind in ("multi-hop", "paraphrase"):
        k = (entry.get("derived") or {}).get(f"default_vs_best_baseline.{kind}")
        if k:
            parts.append(f"{kind} {_r(k['ours'])} vs {_r(k['baseline'])} ({_pct(k.get('gain_pct'))})")
    return "; ".join(parts) + "."
