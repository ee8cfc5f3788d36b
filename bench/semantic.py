#!/usr/bin/env python3
"""Embedding latency and text recall (in-process engine): prints tables and writes JSON.

    python bench/semantic.py [--quick] [--out bench/results/semantic.json] [--embedders hash,int8,local]

A remember with text and no embedding is acknowledged after its durable commit; the
server's one background worker then embeds pending rows in batches and adds their
vectors (SPEC §9). This measures, with durable (fsync) writes, for the embedders
``local`` (all-MiniLM-L6-v2, fp32), ``int8`` (all-MiniLM-L6-v2-int8) and ``hash``,
with ``none`` as the reference (targets in brackets):

  1. acknowledgement -> vector-searchable: a paced writer remembers ~200-character
     texts at 100/s for 20 s, then (once those are all searchable) at 500/s for 20 s or
     until the space holds 10k; a poller (every 2 ms) notes when each acknowledged rowid
     first appears in ``space.vectors``. P50/P95/P99/max, achieved rate, backlog, and
     the embedder's sustained texts/s, alone and in the engine. The reference is
     ``none`` with client vectors: searchable at the ack, so its figures are the
     poller's own resolution.                                   [P99 < 1 s at 100/s]
  2. remember latency, one client, sequential, unpaced: each embedder against ``none``
     (same texts, no embedding), in alternating rounds, each in a fresh space. The
     background embedding shares the machine's 2 cores with the writes.
                                                  [local P50 and throughput within 10 % of none]
  3. recall with a text query at 10k memories (the space of 1, topped up and fully
     embedded): distinct questions of 8-20 words, one at a time; the query-embedding
     share (recall metadata ``query_embedding_ms``), the same recall with a precomputed
     client embedding, and by that embedding alone.              [P50 < 10 ms]

Order: the models (load, texts/s alone), then 2, then 1 and 3 per embedder, cheapest first;
the JSON is rewritten after each part, so a run stopped at its time limit keeps what finished.
The local model embeds ~30-80 texts/s of this size on one core here (int8 ~2.5x that), so
loading its 10k takes minutes: the full run takes ~7 minutes on an idle 2-core machine and
~15 under load.

``--quick``: 3 s phases, 300 writes, 1k memories, 100 questions (a smoke run, ~100 s).
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import itertools
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import RESULTS, exit_on_sigterm, make_service, pct, rmtree, stamp, tmpdir, versions, write_json
from semantic_texts import questions, texts

from engram.cognition.recall import recall
from engram.core.models import Cue, EmbedderChoice, MemoryInput
from engram.core.space import MemorySpace
from engram.core.text import fts_query

EMBEDDERS: dict[str, tuple[str, str | None]] = {
    "local": ("local", "all-MiniLM-L6-v2"),
    "int8": ("local", "all-MiniLM-L6-v2-int8"),
    "hash": ("hash", None),
    "none": ("none", None),
}
TARGETS = {"searchable_p99_ms_at_100": 1000.0, "remember_ratio_local_none": 1.10, "text_recall_p50_ms": 10.0}
POLL_SECONDS = 0.002
# Rows become searchable oldest first (the backlog is embedded in rowid order, a batch at
# a time), so each poll looks at the oldest outstanding rows only: the poll stays cheap
# (and steals no CPU from the engine) however deep the backlog is.
POLL_WINDOW = 1024


# -- statistics -----------------------------------------------------------------------
def summary(ms: Sequence[float], digits: int = 3) -> dict[str, Any]:
    return {
        "p50_ms": round(pct(ms, 50), digits),
        "p95_ms": round(pct(ms, 95), digits),
        "p99_ms": round(pct(ms, 99), digits),
        "max_ms": round(max(ms), digits) if ms else None,
        "samples": len(ms),
    }


# -- set-up ------------------------------------------------------------------------------
def new_space(svc: Any, sid: str, label: str) -> MemorySpace:
    provider, model = EMBEDDERS[label]
    space, _ = svc.registry.create(sid, embedder=EmbedderChoice(provider=provider, model=model))
    assert space.embedder_spec.provider == provider, space.embedder_spec
    return svc.space(sid)


def embedder_facts(svc: Any, space: MemorySpace, sample: list[str]) -> dict[str, Any]:
    """Load the model (timed), then its sustained texts/s alone, in the engine's batch size."""
    emb = svc.embedders.get(space.embedder_spec)
    t0 = time.perf_counter()
    emb.embed(sample[:1])
    load = time.perf_counter() - t0
    batch = svc.settings.embedding_batch_size
    emb.embed(sample[:batch])  # first full batch: allocator and kernel warm-up
    t0 = time.perf_counter()
    for i in range(0, len(sample), batch):
        emb.embed(sample[i : i + batch])
    rate = len(sample) / (time.perf_counter() - t0)
    return {
        "provider": space.embedder_spec.provider,
        "model": space.embedder_spec.model,
        "dimension": emb.dimension,
        "first_embed_seconds": round(load, 2),
        "model_texts_per_s": round(rate, 1),
        "model_rate_texts": len(sample),
        "batch_size": batch,
        "torch_threads": svc.settings.embedder_threads,
    }


# -- 1. acknowledgement -> searchable ------------------------------------------------------------
class SearchablePoller(threading.Thread):
    """Notes, every ``POLL_SECONDS``, when each acknowledged rowid first appears in ``space.vectors``."""

    def __init__(self, space: MemorySpace) -> None:
        super().__init__(name="bench-poller", daemon=True)
        self.space = space
        self.inbox: queue.SimpleQueue[tuple[int, float]] = queue.SimpleQueue()
        self.outstanding: dict[int, float] = {}  # rowid -> ack time, in ack (= rowid) order
        self.found: list[tuple[float, float]] = []  # (ack, searchable) perf_counter times
        self.deadline: float | None = None  # set when the writer is done: poll until drained or then

    def run(self) -> None:
        vectors = self.space.vectors
        while True:
            while True:
                try:
                    rowid, acked = self.inbox.get_nowait()
                except queue.Empty:
                    break
                self.outstanding[rowid] = acked
            now = time.perf_counter()
            for rowid in [r for r in itertools.islice(self.outstanding, POLL_WINDOW) if r in vectors]:
                self.found.append((self.outstanding.pop(rowid), now))
            if (
                self.deadline is not None
                and self.inbox.empty()
                and (not self.outstanding or now > self.deadline)
            ):
                return
            time.sleep(POLL_SECONDS)


def paced_phase(
    space: MemorySpace,
    items: list[MemoryInput],
    rate: float,
    seconds: float,
    drain_seconds: float,
    batch: int,
) -> dict[str, Any]:
    """Remember ``items`` at ``rate``/s for ``seconds`` from one thread; when does each become searchable?

    The writer stops after ``seconds`` (or when ``items`` run out); the poller then waits
    until every acknowledged row is searchable, at most ``drain_seconds``.
    """
    poller = SearchablePoller(space)
    poller.start()
    ack_ms: list[float] = []
    backlog: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    next_sample = t0
    written = 0
    for i, item in enumerate(items):
        if time.perf_counter() - t0 >= seconds:
            break
        wait = t0 + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        s = time.perf_counter()
        receipt = space.remember(item)
        acked = time.perf_counter()
        ack_ms.append((acked - s) * 1000)
        poller.inbox.put((int(space.row_by_id(receipt.memory_id)[0]), acked))
        written += 1
        if acked >= next_sample:
            backlog.append((round(acked - t0, 2), space.embedding_backlog))
            next_sample += 0.5
    end = time.perf_counter()
    backlog_end = space.embedding_backlog
    backlog.append((round(end - t0, 2), backlog_end))
    poller.deadline = end + drain_seconds
    poller.join()
    lat = [(seen - ack) * 1000 for ack, seen in poller.found]
    after = [seen for _, seen in poller.found if seen > end]
    drained_in = (max(after) - end) if after else 0.0
    # Keeping up: at most two batches pending at the end, and as many embedded while writing as
    # were written, give or take two batches (a short phase cannot tell a slow drift apart).
    embedded = sum(1 for _, seen in poller.found if seen <= end)
    keeps_up = backlog_end <= 2 * batch and embedded >= written - 2 * batch and not poller.outstanding
    return {
        "rate_target": rate,
        "writes": written,
        "seconds": round(end - t0, 2),
        "achieved_per_s": round(written / (end - t0), 1),
        "ack": summary(ack_ms),
        "searchable": summary(lat),
        "not_searchable_after_drain_wait": len(poller.outstanding),
        "drain_wait_limit_s": drain_seconds,
        "backlog_end": backlog_end,
        "backlog_max": max(b for _, b in backlog),
        "backlog_samples": backlog[:: max(1, len(backlog) // 12)],
        "keeps_up": keeps_up,
        # While the writer ran, and after it stopped (the engine alone, draining what was left):
        "embedded_per_s_while_writing": round(embedded / (end - t0), 1),
        "drain_seconds": round(drained_in, 2),
        "drain_per_s": round(len(after) / drained_in, 1) if drained_in > 0.5 else None,
    }


def text_items(ts: list[str], prefix: str) -> list[MemoryInput]:
    return [MemoryInput(id=f"{prefix}{i}", content=t) for i, t in enumerate(ts)]


def vector_items(ts: list[str], prefix: str, dim: int, seed: int) -> list[MemoryInput]:
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((len(ts), dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [MemoryInput(id=f"{prefix}{i}", content=t, embedding=vecs[i].tolist()) for i, t in enumerate(ts)]


# -- 2. remember latency, one client ------------------------------------------------------------
def drop_space(svc: Any, sid: str, settle_s: float) -> None:
    """Delete a space (its unembedded rows with it), then let an in-flight batch finish."""
    svc.registry.delete(sid)
    time.sleep(settle_s)


def remember_one_client(
    svc: Any, labels: list[str], total: int, rounds: int, seed: int, settle: dict[str, float]
) -> dict[str, Any]:
    """Sequential unpaced remembers, each embedder in its own space, rounds alternating the order.

    Every round writes into a fresh space that is deleted afterwards, so each starts with
    nothing pending and no backlog is left to compete with the next round.
    """
    per_round = total // rounds
    corpus = texts(per_round * rounds, seed)
    lat: dict[str, list[float]] = {lb: [] for lb in labels}
    wall: dict[str, float] = dict.fromkeys(labels, 0.0)
    backlog_end: dict[str, list[int]] = {lb: [] for lb in labels}
    for r in range(rounds):
        for lb in labels if r % 2 == 0 else labels[::-1]:
            sp = new_space(svc, f"seq-{lb}-{r}", lb)
            items = text_items(corpus[r * per_round : (r + 1) * per_round], f"r{r}-")
            t0 = time.perf_counter()
            for item in items:
                s = time.perf_counter()
                sp.remember(item)
                lat[lb].append((time.perf_counter() - s) * 1000)
            wall[lb] += time.perf_counter() - t0
            backlog_end[lb].append(sp.embedding_backlog)
            drop_space(svc, sp.id, settle.get(lb, 0.0))
    out: dict[str, Any] = {"writes": per_round * rounds, "rounds": rounds}
    for lb in labels:
        out[lb] = {
            **summary(lat[lb]),
            "per_s": round(len(lat[lb]) / wall[lb], 1),
            "mean_backlog_at_round_end": round(float(np.mean(backlog_end[lb])), 1),
        }
    base = out.get("none")
    if base:
        for lb in labels:
            if lb != "none":
                out[lb]["p50_ratio_to_none"] = round(out[lb]["p50_ms"] / base["p50_ms"], 3)
                out[lb]["p99_ratio_to_none"] = round(out[lb]["p99_ms"] / base["p99_ms"], 3)
                out[lb]["throughput_ratio_none_to_this"] = round(base["per_s"] / out[lb]["per_s"], 3)
    return out


# -- 3. recall with a text query -----------------------------------------------------------------
def text_recall(svc: Any, space: MemorySpace, qs: list[str], warm: list[str]) -> dict[str, Any]:
    """Recall by text (query embedded by the server), and the same cue with a client embedding.

    The three cues of a question run back to back (text, text + client vector, vector only),
    so drift in the shared machine's load hits them alike. Questions are distinct and never
    asked before: each misses the query cache, so each text recall embeds its query.
    """
    emb = svc.embedders.get(space.embedder_spec)
    for q in warm:
        recall(space, Cue(query=q, max_results=10))
    vecs = np.concatenate([emb.embed(qs[i : i + 64]) for i in range(0, len(qs), 64)])
    kinds = ("text_query", "client_embedding", "vector_only")
    ms: dict[str, list[float]] = {k: [] for k in kinds}
    embed_ms: list[float] = []
    origins: set[str] = set()
    found = 0
    for q, v in zip(qs, vecs, strict=True):
        cues = (
            Cue(query=q, max_results=10),
            Cue(query=q, embedding=v.tolist(), max_results=10),
            Cue(embedding=v.tolist(), max_results=10),
        )
        for kind, cue in zip(kinds, cues, strict=True):
            t0 = time.perf_counter()
            res = recall(space, cue)
            ms[kind].append((time.perf_counter() - t0) * 1000)
            if kind == "text_query":
                found += len(res.memories.vivid) + len(res.memories.associated)
                origins.add(str(res.metadata.get("query_vector")))
                if "query_embedding_ms" in res.metadata:
                    embed_ms.append(res.metadata["query_embedding_ms"])
    # How much of the space each question's words match: the full-text part's work grows with it.
    conn = space.check_healthy().reader()
    count = "SELECT count(*) FROM memories_fts WHERE memories_fts MATCH ?"
    matched = [conn.execute(count, (fq,)).fetchone()[0] for fq in (fts_query(q) for q in qs) if fq]
    return {
        "memories": len(space.vectors),
        "backlog": space.embedding_backlog,
        "questions": len(qs),
        "mean_words": round(float(np.mean([len(q.split()) for q in qs])), 1),
        "text_query": summary(ms["text_query"]),
        "query_embedding": summary(embed_ms),
        "query_vector_origins": sorted(origins),
        "client_embedding": {
            **summary(ms["client_embedding"]),
            "cue": "same query text + precomputed embedding",
        },
        "vector_only": {**summary(ms["vector_only"]), "cue": "precomputed embedding, no text"},
        "mean_results": round(found / max(1, len(qs)), 2),
        "fts_match_fraction_mean": round(float(np.mean(matched)) / max(1, len(space.vectors)), 3),
    }


# -- the run ------------------------------------------------------------------------------------
def verdicts(res: dict[str, Any]) -> dict[str, Any]:
    """Each target: a label for the report, measured, target, met?"""
    out: dict[str, Any] = {}

    def put(name: str, label: str, measured: Any, target: float, ok: bool, unit: str = "") -> None:
        out[name] = {"label": label, "measured": measured, "target": target, "met": bool(ok), "unit": unit}

    lim = TARGETS["searchable_p99_ms_at_100"]
    for lb, phases in (res.get("searchable") or {}).items():
        p = get_num(phases, "100", "searchable", "p99_ms")
        if lb != "none" and p is not None:
            complete = not phases["100"]["not_searchable_after_drain_wait"]  # a row never seen fails it
            put(
                f"searchable_p99_ms_at_100_{lb}",
                f"text remembered at 100/s -> vector-searchable, P99 ({lb}): < {lim / 1000:g} s",
                p,
                lim,
                complete and p < lim,
                " ms",
            )
    rem = (res.get("remember_1client") or {}).get("local") or {}
    lim = TARGETS["remember_ratio_local_none"]
    if "p50_ratio_to_none" in rem:
        put(
            "remember_p50_ratio_local_to_none",
            f"remember P50, 1 client, local embedder / none: <= {lim}",
            rem["p50_ratio_to_none"],
            lim,
            rem["p50_ratio_to_none"] <= lim,
        )
        put(
            "remember_throughput_ratio_none_to_local",
            f"remember throughput, 1 client, none / local embedder: <= {lim}",
            rem["throughput_ratio_none_to_this"],
            lim,
            rem["throughput_ratio_none_to_this"] <= lim,
        )
    lim = TARGETS["text_recall_p50_ms"]
    for lb, v in (res.get("text_recall") or {}).items():
        p50 = get_num(v, "text_query", "p50_ms")
        if p50 is not None:
            put(
                f"text_recall_p50_ms_{lb}",
                f"recall by text query at {fmt_k(v.get('memories'))} "
                f"incl. query embedding, P50 ({lb}): < {lim:g} ms",
                p50,
                lim,
                p50 < lim,
                " ms",
            )
    return out


def fmt_k(n: Any) -> str:
    return f"{n / 1000:g}k" if isinstance(n, int) and n >= 1000 else str(n)


def get_num(d: dict[str, Any], *path: str) -> float | None:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None  # type: ignore[assignment]
    return float(d) if isinstance(d, (int, float)) else None  # type: ignore[arg-type]


def print_tables(res: dict[str, Any]) -> None:
    def show_table(title: str, header: list[str], rows: list[list[Any]]) -> None:
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
        print(f"\n{title}")
        for cells in (header, *rows):
            print("  ".join(f"{c!s:>{w}}" for c, w in zip(cells, widths, strict=True)))

    model_rate = {lb: v.get("model_texts_per_s") for lb, v in res["embedders"].items()}
    rows = [
        [lb, rate, v["achieved_per_s"], *(v["searchable"][k] for k in ("p50_ms", "p95_ms", "p99_ms")),
         v["searchable"]["max_ms"],
         v["backlog_end"], v["embedded_per_s_while_writing"], v["drain_per_s"], model_rate.get(lb),
         "yes" if v["keeps_up"] else "NO"]
        for lb, phases in res["searchable"].items()
        for rate, v in phases.items()
    ]  # fmt: skip
    show_table(
        "1. acknowledgement -> vector-searchable (ms)",
        ["embed", "rate", "achieved", "P50", "P95", "P99", "max", "backlog", "embed/s", "drain/s", "model/s",
         "keeps up"],
        rows,
    )  # fmt: skip
    rem = res.get("remember_1client") or {}
    keys = (
        "p50_ms",
        "p99_ms",
        "per_s",
        "p50_ratio_to_none",
        "p99_ratio_to_none",
        "throughput_ratio_none_to_this",
    )
    rows = [[lb, *(v.get(k, "-") for k in keys)] for lb, v in rem.items() if isinstance(v, dict)]
    show_table(
        f"2. remember, 1 client, sequential, {rem.get('writes')} writes (ms)",
        ["embed", "P50", "P99", "writes/s", "P50/none", "P99/none", "none/this writes/s"],
        rows,
    )
    paths = [("text_query", "p50_ms"), ("text_query", "p95_ms"), ("text_query", "p99_ms"),
             ("query_embedding", "p50_ms"), ("query_embedding", "p99_ms"), ("client_embedding", "p50_ms"),
             ("client_embedding", "p99_ms"), ("vector_only", "p50_ms")]  # fmt: skip
    rows = [[lb, v["memories"], *(v[a][b] for a, b in paths)] for lb, v in res["text_recall"].items()]
    show_table(
        "3. recall(space, Cue(query=q, max_results=10)), one at a time (ms)",
        ["embed", "memories", "P50", "P95", "P99", "embed P50", "embed P99", "client P50", "client P99",
         "vector-only P50"],
        rows,
    )  # fmt: skip
    print("\ntargets:")
    for name, t in res["targets"].items():
        print(f"  {'ok  ' if t['met'] else 'MISS'} {name}: {t['measured']} (target {t['target']})")


def save(res: dict[str, Any], path: Path, started: float, complete: bool) -> None:
    """Write what has been measured so far (a run stopped at its time limit keeps its finished parts)."""
    res["complete"] = complete
    res["timings_s"]["total"] = round(time.perf_counter() - started, 1)
    res["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    res["targets"] = verdicts(res)
    write_json(path, res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="3 s phases, 1k memories, 100 questions (smoke run)")
    ap.add_argument("--out", help="results JSON (default bench/results[/quick]/semantic.json)")
    ap.add_argument("--embedders", default="hash,int8,local", help="comma-separated, run in this order")
    ap.add_argument("--seconds", type=float, help="seconds per paced phase (default 20; quick 3)")
    ap.add_argument("--memories", type=int, help="memories in the recall space (default 10,000; quick 1,000)")
    args = ap.parse_args()
    exit_on_sigterm()
    labels = [x.strip() for x in args.embedders.split(",") if x.strip()]
    unknown = set(labels) - (set(EMBEDDERS) - {"none"})
    if unknown:
        ap.error(f"unknown embedders {sorted(unknown)}; choose from local, int8, hash")
    quick = args.quick
    seconds = args.seconds or (3.0 if quick else 20.0)
    memories = args.memories or (1_000 if quick else 10_000)
    n_questions = 100 if quick else 300
    seq_writes, seq_rounds = (300, 2) if quick else (2_000, 4)
    out_path = Path(args.out) if args.out else (RESULTS / "quick" if quick else RESULTS) / "semantic.json"
    res: dict[str, Any] = {
        **stamp(quick),
        "versions": versions(("engram", "numpy", "torch", "sentence-transformers")),
        "params": {
            "seconds_per_phase": seconds,
            "rates": [100, 500],
            "memories": memories,
            "questions": n_questions,
            "durability": "fsync",
            "poll_ms": POLL_SECONDS * 1000,
            "embedders": labels,
            "text_chars_mean": round(float(np.mean([len(t) for t in texts(1000, 1)])), 1),
        },
        "embedders": {},
        "searchable": {},
        "text_recall": {},
        "timings_s": {},
    }
    tmp = tmpdir("engram-semantic-")
    svc = make_service(tmp / "data", ())
    batch = svc.settings.embedding_batch_size
    started = time.perf_counter()
    warm = questions(10, 41)
    qs = questions(n_questions, 42, exclude=set(warm))
    try:
        # Models first (load, then texts/s alone): every later part runs with warm models.
        sample = texts(64 if quick else 320, 7)
        settle: dict[str, float] = {}  # seconds one batch takes: an in-flight batch is done after it
        for lb in labels:
            facts = res["embedders"][lb] = embedder_facts(svc, new_space(svc, f"model-{lb}", lb), sample)
            settle[lb] = min(5.0, 1.5 * batch / facts["model_texts_per_s"])
            print(f"{lb}: {facts}", flush=True)
        # 2 (cheap, so first). Remember latency at one client.
        t_part = time.perf_counter()
        rem = res["remember_1client"] = remember_one_client(
            svc, ["none", *labels], seq_writes, seq_rounds, 30, settle
        )
        res["timings_s"]["remember_1client"] = round(time.perf_counter() - t_part, 1)
        print(f"remember, 1 client: {rem}", flush=True)
        # 1. ack -> searchable: the reference, then each embedder, whose 500/s space is then its
        # recall space (3), topped up to `memories` and drained. Cheapest embedders first.
        ref = new_space(svc, "ack-none", "none")
        res["searchable"]["none"] = {}
        for rate in (100, 500):
            items = vector_items(texts(int(rate * seconds / 4), 90 + rate), f"n{rate}-", 384, rate)
            res["searchable"]["none"][str(rate)] = {
                **paced_phase(ref, items, rate, seconds / 4, 10, batch),
                "note": "client vectors: searchable at the ack (the poller's resolution)",
            }
        save(res, out_path, started, False)
        for k, lb in enumerate(labels):
            t_emb = time.perf_counter()
            phases: dict[str, Any] = {}
            res["searchable"][lb] = phases
            # One space per embedder holds both phases and, topped up to `memories`, is its recall
            # space (3): every text the model embeds here is used. Each phase starts with nothing
            # pending: the poller waits until the previous phase's rows are all searchable.
            big = new_space(svc, f"load-{lb}", lb)
            corpus = text_items(texts(memories, 20 + k), "b")
            phases["100"] = paced_phase(big, corpus[: int(100 * seconds)], 100, seconds, 900, batch)
            print(f"{lb} 100/s: {phases['100']}", flush=True)
            done = phases["100"]["writes"]
            phases["500"] = paced_phase(big, corpus[done:], 500, seconds, 900, batch)
            print(f"{lb} 500/s: {phases['500']}", flush=True)
            save(res, out_path, started, False)
            for item in corpus[done + phases["500"]["writes"] :]:  # top up to the recall size, unpaced
                big.remember(item)
            left = big.wait_embedded(900)
            if left:
                raise RuntimeError(f"{lb}: {left} memories still not embedded after 900 s")
            res["timings_s"][f"searchable_{lb}"] = round(time.perf_counter() - t_emb, 1)
            t_part = time.perf_counter()
            res["text_recall"][lb] = text_recall(svc, big, qs, warm)
            res["timings_s"][f"text_recall_{lb}"] = round(time.perf_counter() - t_part, 1)
            print(f"{lb} text recall: {res['text_recall'][lb]}", flush=True)
            drop_space(svc, big.id, 0.0)
            save(res, out_path, started, False)
    except BaseException as exc:  # SIGTERM at the time limit (SystemExit), or a failure: keep what ran
        res["stopped"] = f"{type(exc).__name__}: {exc}"
        save(res, out_path, started, False)
        raise
    finally:
        svc.close()
        rmtree(tmp)
    save(res, out_path, started, True)
    print_tables(res)


if __name__ == "__main__":
    main()
