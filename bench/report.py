#!/usr/bin/env python3
"""Build docs/benchmarks.md and its plots from bench/results/*.json.

    python bench/report.py [--quick]

Called by bench/run.py at the end of every run; runnable alone to rebuild the
report from the JSON that is there. Every figure in the report is read from a
results file of the run recorded in run.json; anything absent is reported as
absent, never filled in.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchlib import RESULTS, ROOT

DOCS = ROOT / "docs"
NA = "—"


# -- reading -------------------------------------------------------------------------
def get(d: Any, path: str, default: Any = None) -> Any:
    """``get(d, "a.b.c")``; keys may contain dots when quoted: ``get(d, "scale.'100000'.p99")``."""
    cur = d
    for key in re.findall(r"'[^']*'|[^.]+", path):
        key = key.strip("'")
        if isinstance(cur, dict) and key in cur:
            cur = cur[key]
        elif isinstance(cur, list) and key.isdigit() and int(key) < len(cur):
            cur = cur[int(key)]
        else:
            return default
    return cur


def walk(d: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(d, dict):
        for k, v in d.items():
            yield from walk(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, d


def find(d: Any, pattern: str) -> tuple[str, Any] | None:
    """First numeric leaf whose dotted path matches ``pattern`` (regex, case-insensitive)."""
    rx = re.compile(pattern, re.I)
    for path, v in walk(d):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and rx.search(path):
            return path, v
    return None


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return NA
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != v:
            return NA
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        if 0 < abs(v) < 1:
            return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) >= 0.001 else f"{v:.2g}"
        return f"{v:.{digits}f}"
    return str(v)


def table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in r) + " |")
    return "\n".join(out)


def mb(b: Any) -> float | None:
    return round(b / 2**20, 1) if isinstance(b, (int, float)) else None


SEPARATE_RESULTS = ("spaces", "subscribers", "http_hostile", "peer_chroma_server", "recall_scaling",
                    "text_query", "postgres", "pg_consolidation")


class Results:
    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir
        self.run = self._load(out_dir / "run.json") or {}
        self.data: dict[str, dict[str, Any]] = {}
        for name, st in self.run.get("steps", {}).items():
            if st.get("results"):
                loaded = self._load(ROOT / st["results"])
                if loaded is not None:
                    self.data[name] = loaded
        # Steps (or scripts) run on their own, outside this run: shown, with the date of their run.
        self.separate: dict[str, str] = {}
        for name in SEPARATE_RESULTS:
            if name not in self.data:
                loaded = self._load(out_dir / f"{name}.json")
                if loaded is not None:
                    self.data[name] = loaded
                    self.separate[name] = str(loaded.get("when") or loaded.get("date_utc") or "an earlier date")
        # 1M does not fit the default time budget: `bench/scale.py --sizes none --with-1m --out
        # <results>/scale_1m.json` measures it separately; shown, dated, when this run has no 1M of its own.
        self.extra_peers: list[dict[str, Any]] = []
        for path in sorted(out_dir.glob("peer_chroma-*.json")):
            extra = self._load(path)
            if extra and "engram" in extra and "chroma" in extra:
                self.extra_peers.append({**extra, "file": path.name})
        self.separate_1m: list[dict[str, Any]] = []
        sizes = get(self.data.get("scale"), "sizes") or {}
        if "scale" in self.data and not any(int(v.get("memories", 0)) >= 1_000_000 for v in sizes.values()):
            for path in sorted(out_dir.glob("scale_1m*.json")):
                extra = self._load(path)
                if not extra:
                    continue
                self.separate_1m.append({**extra, "file": path.name})
                for key, v in (extra.get("sizes") or {}).items():
                    self.data["scale"]["sizes"][key] = {**v, "separate_run": extra.get("date_utc")}

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def __getitem__(self, name: str) -> dict[str, Any]:
        return self.data.get(name, {})

    def has(self, name: str) -> bool:
        return name in self.data

    def status(self, name: str) -> str:
        st = self.run.get("steps", {}).get(name)
        if st is None and name in self.separate:
            return f"run separately ({self.separate[name]})"
        if st is None:
            return "not run"
        s = st.get("status", "?")
        return s + (f" (from the run of {st['from_earlier_run']})" if st.get("from_earlier_run") else "")


# -- targets -------------------------------------------------------------------------
class Target:
    def __init__(
        self, issue: str, name: str, measured: Any, ok: bool | None, unit: str = "", why: str = ""
    ) -> None:
        self.issue, self.name, self.measured, self.ok, self.unit, self.why = (
            issue,
            name,
            measured,
            ok,
            unit,
            why,
        )

    def row(self) -> list[Any]:
        verdict = NA if self.ok is None else ("met" if self.ok else "**missed**")
        if self.measured is None:
            measured = NA
        elif self.unit == " %" and isinstance(self.measured, (int, float)):
            measured = f"{self.measured:+.1f} %"
        else:
            measured = f"{fmt(self.measured)}{self.unit}"
        return [self.issue, self.name, measured, verdict, self.why]


def http_remember_ratio(http: dict[str, Any]) -> tuple[str, Any] | None:
    """The measured REST remember/echo ratio (never the target value stored beside it)."""
    v = get(http, "ratio_to_echo.remember")
    if isinstance(v, (int, float)):
        return "ratio_to_echo.remember", v
    hit = find({k: val for k, val in http.items() if "target" not in k}, r"remember.*(vs|over|to).*echo")
    return hit


def _cmp(v: Any, pred: Callable[[float], bool]) -> bool | None:
    return None if not isinstance(v, (int, float)) or v != v else bool(pred(float(v)))


def targets(r: Results) -> list[Target]:
    e, cog, http, grpc = r["engine"], r["cognition"], r["http"], r["grpc"]
    sizes = [k for k in (get(e, "scale") or {}) if k.isdigit()]
    big = max(sizes, key=int) if sizes else "100000"
    out: list[Target] = []

    def t(
        issue: str, name: str, v: Any, pred: Callable[[float], bool], unit: str = "", src: str = ""
    ) -> None:
        out.append(
            Target(
                issue,
                name,
                v,
                _cmp(v, pred),
                unit,
                (src if v is not None else f"not measured ({src})") if src else "",
            )
        )

    v = get(
        e,
        "targets.durable_remember_per_second.measured",
        get(e, "durable_remember.per_second", get(e, "durable_remember.service.per_second")),
    )
    t("2", "durable remember, 32 writers, in-process: >= 20,000/s", v, lambda x: x >= 20_000, "/s", "engine")
    t(
        "2",
        f"recall P99 indexed at {int(big) // 1000}k x 768: <= 5 ms",
        get(e, f"scale.'{big}'.indexed.p99_ms"),
        lambda x: x <= 5,
        " ms",
        "engine, vector search",
    )
    t(
        "2",
        f"recall@10 indexed at {int(big) // 1000}k: >= 0.95",
        get(e, f"scale.'{big}'.indexed.recall_at_10"),
        lambda x: x >= 0.95,
        "",
        "engine",
    )
    t(
        "2",
        f"recall P99 exact at {int(big) // 1000}k x 768: <= 30 ms",
        get(e, f"scale.'{big}'.exact.p99_ms"),
        lambda x: x <= 30,
        " ms",
        "engine, vector search",
    )
    t(
        "2",
        f"full recall() P99 at {int(big) // 1000}k (indexed path): <= 5 ms",
        get(e, f"scale.'{big}'.full_recall.p99_ms"),
        lambda x: x <= 5,
        " ms",
        "engine, recall() incl. scoring",
    )
    t(
        "2",
        "resident memory per 768-d memory: <= 5 KB",
        get(e, f"scale.'{big}'.reopen.rss_bytes_per_memory"),
        lambda x: x <= 5120,
        " B",
        "engine, reopen child",
    )
    t(
        "2",
        f"reopen a space of {int(big) // 1000}k: < 5 s",
        get(e, f"scale.'{big}'.reopen.open_seconds"),
        lambda x: x < 5,
        " s",
        "engine",
    )
    ten = get(e, "loaded_spaces.'10'.p50_overhead_pct_vs_1", get(e, "loaded_spaces.'10'.overhead_pct_vs_1"))
    t(
        "2",
        f"recall P50 with 10 loaded spaces "
        f"({fmt(get(e, 'loaded_spaces.memories_per_space'))} memories each): "
        "<= 5 % slower than 1",
        ten,
        lambda x: x <= 5,
        " %",
        "engine",
    )
    m = r["multispace"]
    for label, path in (
        ("recall P50, 10 active spaces vs 1 (same total data)", "cases.'10'.overhead_vs_1.p50_pct"),
        (
            "recall P50, 10 active spaces vs 1 of the same per-space size",
            "cases.'10'.overhead_vs_same_per_space_size.p50_pct",
        ),
        ("recall P50, 1 space with 1,000 idle spaces vs 1 alone", "cases.'1+idle'.overhead_vs_1.p50_pct"),
        (
            "recall throughput (8 callers), 10 active spaces vs 1 (same total data)",
            "cases.'10'.overhead_vs_1.throughput_pct",
        ),
    ):
        v = get(m, path)
        out.append(
            Target(
                "7",
                label,
                v,
                None,
                " %",
                "multispace (reported; the issue sets no bound)"
                if v is not None
                else "not measured (multispace)",
            )
        )
    total = r.run.get("seconds_total")
    if isinstance(total, (int, float)) and not any(
        st.get("from_earlier_run") for st in r.run.get("steps", {}).values()
    ):
        limit = 180 if r.run.get("quick") else 900
        label = "--quick" if r.run.get("quick") else "default"
        t("7", f"the {label} run takes < {limit // 60} min", total, lambda x: x < limit, " s", "run.json")
    # cognition publishes its own targets
    for key, tgt in (cog.get("targets") or {}).items():
        if isinstance(tgt, dict) and "measured" in tgt:
            limit = tgt.get("target")
            out.append(
                Target(
                    "3", f"{key} (target {fmt(limit)})", tgt.get("measured"), tgt.get("met"), "", "cognition"
                )
            )
    if not cog.get("targets"):
        out.append(
            Target(
                "3",
                "spreading/hybrid recall P99 at 100k <= 20 ms; consolidation of 10k < 10 s",
                None,
                None,
                "",
                "not measured (cognition)",
            )
        )
    hv = http_remember_ratio(http)
    t(
        "4",
        "REST remember >= 60 % of echo (32 clients)",
        hv[1] if hv else None,
        lambda x: x >= 0.6,
        "",
        f"http: {hv[0]}" if hv else "http",
    )
    t(
        "5",
        "gRPC unary Remember >= 60 % of Echo (32 clients)",
        get(grpc, "results.ratios.remember_vs_echo"),
        lambda x: x >= 0.6,
        "",
        "grpc",
    )
    t(
        "5",
        "StreamingRemember >= 50 % of EchoStream",
        get(grpc, "results.ratios.streaming_remember_vs_echo_stream"),
        lambda x: x >= 0.5,
        "",
        "grpc",
    )
    st = r["startup"].get("cases", {})
    if st:
        most = max(st, key=int)
        t(
            "7",
            f"start-up with {int(most):,} spaces on disk does not grow "
            "(vs fewest; <= 50 %, the run-to-run noise here)",
            st[most].get("start_growth_pct_vs_fewest"),
            lambda x: x <= 50,
            " %",
            "startup",
        )
    if "quality" in r.run.get("steps", {}) or r.has("quality"):
        from report_quality import quality_targets

        for name, v, met, unit, src in quality_targets(r["quality"]):
            out.append(Target("quality", name, v, met, unit, src))
    crashes = [(v, v["crash"]) for v in (r["scale"].get("sizes") or {}).values() if "crash" in v]
    if not crashes:
        t("7", "every acknowledged write survives SIGKILL", None, lambda x: x == 0, "", "scale")
    for v, crash in crashes:
        size = f"{fmt(v.get('memories'))} x {v.get('dim')}"
        size += ", separate run" if v.get("separate_run") else ""
        t("7", f"every acknowledged write survives SIGKILL ({size})", crash.get("acknowledged_missing"),
          lambda x: x == 0, " missing", "scale")  # fmt: skip
        if int(v.get("memories", 0)) == 100_000:
            t("2", "recovery of a 100k space after SIGKILL, restart to first recall answered: < 5 s",
              crash.get("recovery_total_s"), lambda x: x < 5, " s", "scale, real server")  # fmt: skip
    for tgt in (r["semantic"].get("targets") or {}).values():
        out.append(Target("§9", tgt["label"], tgt["measured"], tgt["met"], tgt.get("unit", ""), "semantic"))
    exact = r["rank_exact"].get("recall_at_10_vs_exact_float32") or {}
    if "rank_exact" in r.run.get("steps", {}) or exact:
        t("§9", 'rank "similarity" recall@10 against exact float32 search (20k x 384): >= 0.99',
          exact.get("similarity"), lambda x: x >= 0.99, "", "rank_exact")  # fmt: skip
    if "semantic" in r.run.get("steps", {}) and not r["semantic"].get("targets"):
        label = "text -> vector-searchable P99 < 1 s at 100/s; text recall P50 < 10 ms at 10k"
        out.append(Target("§9", label, None, None, "", "not measured (semantic)"))
    return out


# -- plots ------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_spaces(r: Results, path: Path) -> Path | None:
    cases = get(r["multispace"], "cases") or {}
    eng = get(r["engine"], "loaded_spaces") or {}
    if not cases and not eng:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5.4))
    labels = [k for k in ("1", "5", "10", "1+idle") if k in cases]
    xs = list(range(len(labels)))
    names = {"1": "1", "5": "5", "10": "10", "1+idle": f"1 + {get(cases, '1+idle.idle_spaces', 0):,} idle"}
    if labels:
        ax.plot(xs, [cases[k]["p50_ms"] for k in labels], "o-", label="recall P50 (multispace)")
        ax.plot(xs, [cases[k]["p99_ms"] for k in labels], "s--", label="recall P99 (multispace)")
    eng_labels = [k for k in ("1", "5", "10") if k in eng]
    if eng_labels:
        per = eng.get("memories_per_space")
        ax.plot(
            [labels.index(k) if k in labels else int(k) for k in eng_labels],
            [eng[k]["p50_ms"] for k in eng_labels],
            "^:",
            label=f"recall P50, engine bench ({fmt(per)} per space, recall in one)"
            if per
            else "engine bench P50",
        )
    small = cases.get("1-small")
    if small:
        ax.axhline(
            small["p50_ms"],
            color="grey",
            linestyle=":",
            linewidth=1,
            label=f"P50 of 1 space holding {fmt(small.get('memories_per_space'))} (control)",
        )
    ax.set_xticks(xs, [names[k] for k in labels])
    ax.set_xlabel("active spaces (same total data)")
    ax.set_ylabel("ms")
    total = get(r["multispace"], "total")
    ax.set_title(
        f"Recall latency vs spaces ({fmt(total)} memories x 768 in total)"
        if total
        else "Recall latency vs spaces"
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_size(r: Results, path: Path) -> Path | None:
    e, s, peer = r["engine"], r["scale"], r["peer_chroma"]
    # family -> percentile -> [(memories, ms)]
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}

    def add(family: str, pctl: str, n: int, val: Any) -> None:
        if isinstance(val, (int, float)) and val == val:
            series.setdefault(family, {}).setdefault(pctl, []).append((n, float(val)))

    for n, v in (get(e, "scale") or {}).items():
        if not (isinstance(v, dict) and n.isdigit()):
            continue
        add("engine: exact vector search", "P50", int(n), get(v, "exact.p50_ms"))
        add("engine: exact vector search", "P99", int(n), get(v, "exact.p99_ms"))
        add("engine: indexed vector search", "P50", int(n), get(v, "indexed.p50_ms"))
        add("engine: indexed vector search", "P99", int(n), get(v, "indexed.p99_ms"))
        add("engine: full recall()", "P50", int(n), get(v, "full_recall.p50_ms"))
        add("engine: full recall()", "P99", int(n), get(v, "full_recall.p99_ms"))
    for v in (get(s, "sizes") or {}).values():
        fam = "server: recall over HTTP" + ("" if v.get("dim") == 768 else f" ({v.get('dim')}-d)")
        add(fam, "P50", int(v.get("memories", 0)), get(v, "recall_http.p50_ms"))
        add(fam, "P99", int(v.get("memories", 0)), get(v, "recall_http.p99_ms"))
    if peer.get("chroma"):
        n = int(peer.get("per_space") or 0)
        add("peer run: Engram recall()", "P50", n, get(peer, "engram.query.p50_ms"))
        add("peer run: Engram recall()", "P99", n, get(peer, "engram.query.p99_ms"))
        add("peer run: Chroma query()", "P50", n, get(peer, "chroma.query.p50_ms"))
        add("peer run: Chroma query()", "P99", n, get(peer, "chroma.query.p99_ms"))
    if not series:
        return None
    plt = _plt()
    from matplotlib.ticker import ScalarFormatter

    fig, ax = plt.subplots(figsize=(8, 6.2))
    for i, (family, by_p) in enumerate(sorted(series.items())):
        for pctl, pts in sorted(by_p.items()):
            pts.sort()
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "-" if pctl == "P50" else "--",
                marker="o" if pctl == "P50" else "s",
                color=f"C{i}",
                label=f"{family} {pctl}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        fmt_ = ScalarFormatter()
        fmt_.set_scientific(False)
        axis.set_major_formatter(fmt_)
    ax.set_xlabel("memories in one space (768-d)")
    ax.set_ylabel("recall latency, ms (log)")
    ax.set_title("Recall latency vs space size (solid P50, dashed P99)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_startup(r: Results, path: Path) -> Path | None:
    cases = get(r["startup"], "cases") or {}
    if not cases:
        return None
    plt = _plt()
    keys = sorted(cases, key=int)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(
        [max(1, int(k)) for k in keys],
        [cases[k]["start_to_alive_s"] for k in keys],
        "o-",
        label="start until /health/alive (s)",
    )
    ax2 = ax.twinx()
    ax2.plot(
        [max(1, int(k)) for k in keys],
        [cases[k]["rss_mb_at_alive"] for k in keys],
        "s--",
        color="C1",
        label="RSS at alive (MB)",
    )
    ax.set_xscale("log")
    ax.set_xlabel("spaces on disk (0 plotted at 1)")
    ax.set_ylabel("seconds")
    ax2.set_ylabel("MB")
    ax.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax.set_title("Server start-up vs spaces on disk")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [str(h.get_label()) for h in handles], loc="lower center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_quality(r: Results, path: Path) -> Path | None:
    if not r.has("quality"):
        return None
    from report_quality import plot_quality as plot

    return plot(r["quality"], path, _plt())


# -- sections -----------------------------------------------------------------------------
def section_engine(r: Results) -> list[str]:
    e = r["engine"]
    lines = ["## Engine (bench/engine.py, in-process)", ""]
    if not e:
        return [*lines, f"No results: {r.status('engine')}.", ""]
    dr = e.get("durable_remember") or {}
    if dr:
        paths = [(k, v) for k, v in dr.items() if isinstance(v, dict) and "per_second" in v]
        if not paths and "per_second" in dr:
            paths = [("engine", dr)]
        lines += [
            f"Durable remember, {dr.get('writers')} concurrent writers, {fmt(dr.get('memories'))} memories, "
            f"durability {dr.get('durability')}:",
            "",
            table(
                ["path", "memories/s", "mean group-commit batch", "CPU µs per write"],
                [[k, v.get("per_second"), v.get("mean_batch"), v.get("cpu_us_per_write")] for k, v in paths],
            ),
            "",
        ]
    rows = []
    for n, v in (e.get("scale") or {}).items():
        if not isinstance(v, dict):
            continue
        rows.append(
            [
                f"{int(n):,}",
                get(v, "exact.p50_ms"),
                get(v, "exact.p99_ms"),
                get(v, "indexed.p50_ms"),
                get(v, "indexed.p99_ms"),
                get(v, "indexed.recall_at_10"),
                get(v, "full_recall.p50_ms"),
                get(v, "full_recall.p99_ms"),
                get(v, "reopen.open_seconds"),
                get(v, "reopen.rss_bytes_per_memory"),
            ]
        )
    if rows:
        lines += [
            table(
                [
                    "memories x 768",
                    "exact P50 ms",
                    "exact P99 ms",
                    "indexed P50 ms",
                    "indexed P99 ms",
                    "indexed recall@10",
                    "recall() P50 ms",
                    "recall() P99 ms",
                    "reopen s",
                    "RSS B/memory",
                ],
                rows,
            ),
            "",
        ]
    ls = e.get("loaded_spaces") or {}
    if ls:

        def over(v: dict[str, Any]) -> str:
            x = v.get("p50_overhead_pct_vs_1", v.get("overhead_pct_vs_1"))
            return f"{x:+.1f} %" if isinstance(x, (int, float)) else NA

        lines += [
            f"Loaded spaces, {fmt(ls.get('memories_per_space'))} memories each (recall in the first):",
            "",
            table(
                ["loaded spaces", "recall P50 ms", "P99 ms", "P50 vs 1"],
                [
                    [k, get(v, "p50_ms"), get(v, "p99_ms"), over(v)]
                    for k, v in ls.items()
                    if isinstance(v, dict)
                ],
            ),
            "",
        ]
    return lines


def section_generic(r: Results, name: str, title: str, limit: int = 40) -> list[str]:
    d = r[name]
    lines = [f"## {title}", ""]
    if not d:
        return [*lines, f"No results: {r.status(name)}.", ""]
    rows = []
    for path, v in walk(d):
        if path.startswith(("machine", "params", "when", "date", "quick")) or isinstance(v, (list, dict)):
            continue
        if isinstance(v, (int, float, bool)) or (isinstance(v, str) and len(v) < 60):
            rows.append([path, v])
    lines += [table(["figure", "value"], rows[:limit])]
    if len(rows) > limit:
        lines += ["", f"({len(rows) - limit} more figures in the JSON.)"]
    return [*lines, ""]


WRITE_NOTES = Path(__file__).resolve().parent / "notes" / "write_profile.md"


def section_batch(d: dict[str, Any], status: str) -> list[str]:
    """Batched REST ingest beside Chroma's server (bench/batch.py), then the hand-measured notes."""
    lines = ["## Batched REST ingest beside Chroma's server (bench/batch.py)", ""]
    if not d:
        lines += [f"No results: {status}.", ""]
    else:
        one, many = d["single"], d["batched"]
        rows = [[f"Engram, 1 per request ({one.get('clients')} clients)", one["memories_per_second"],
                 one["request_p50_ms"], one["request_p99_ms"]],
                [f"Engram, {d['batch_size']} per request ({many.get('clients')} in flight)",
                 many["memories_per_second"], many["request_p50_ms"], many["request_p99_ms"]]]
        ch = d.get("chroma_batched")
        if ch:
            rows.append([f"Chroma `chroma run` {ch.get('chromadb', '')}, {d['batch_size']} per add "
                         f"({ch.get('clients')} in flight)", ch["memories_per_second"], ch["request_p50_ms"],
                         ch["request_p99_ms"]])
        load = [round(x, 2) for x in d.get("loadavg_at_start") or []]
        lines += [f"{fmt(d['memories'])} x {d['dimension']}-d memories, fsync; "
                  f"{d.get('embedding_encoding', '')}; load average at start {load}.", "",
                  table(["", "memories/s", "P50 ms", "P99 ms"], rows), "",
                  f"Batched over single: x{fmt(d.get('batched_over_single'))}; Engram batched over "
                  f"Chroma batched: x{fmt(d.get('batched_over_chroma'))} (target 5)."]
        lines += [""]
    if WRITE_NOTES.exists():
        lines += [*WRITE_NOTES.read_text().rstrip().splitlines(), ""]
    return lines


def section_postgres(d: dict[str, Any], status: str) -> list[str]:
    """SQLite vs PostgreSQL, one and two servers (bench/postgres.py, run on its own)."""
    lines = ["## SQLite vs PostgreSQL, one and two servers (bench/postgres.py)", ""]
    if not d:
        return [*lines, f"No results: {status}.", ""]
    p = d.get("params") or {}
    rows = []
    for key, label in (("sqlite_1", "SQLite, 1 server"), ("postgres_1", "PostgreSQL, 1 server"),
                       ("postgres_2", "PostgreSQL, 2 servers")):
        m = d.get(key) or {}
        rem, rec = m.get("remember") or {}, m.get("recall") or {}
        rows.append([label, rem.get("per_second"), rem.get("p50_ms"), rem.get("p99_ms"), rec.get("per_second"),
                     rec.get("p50_ms"), rec.get("p99_ms"), (m.get("loadavg_after") or [None])[0]])
    adds = d.get("second_server_adds_pct") or {}
    lines += [f"{p.get('clients')} aiohttp clients; {p.get('remembers')} remembers then {p.get('recalls')} "
              f"recalls (top 10 by a {p.get('dim')}-d vector) into a fresh space per deployment; "
              f"run {(d.get('stamp') or {}).get('date_utc')}.", "",
              table(["", "remember/s", "P50 ms", "P99 ms", "recall/s", "P50 ms", "P99 ms", "load after"], rows), "",
              f"A second server changed remember by {adds.get('remember')}% and recall by {adds.get('recall')}%: "
              "on this machine the servers, PostgreSQL and the clients share two cores, so a second server "
              "adds no CPU and no throughput; what a second machine adds is not measured here. Recall on "
              "PostgreSQL is an exact scan (no HNSW: docs/scale-out.md) and skips SQLite's cognitive "
              "ranking.", ""]
    return lines


def section_pg_consolidation(d: dict[str, Any], status: str) -> list[str]:
    """Consolidation, SQLite vs PostgreSQL (bench/pg_consolidation.py, run on its own)."""
    lines = ["## Consolidation, SQLite vs PostgreSQL (bench/pg_consolidation.py)", ""]
    if not d:
        return [*lines, f"No results: {status}.", ""]
    p = d.get("params") or {}
    stamp_ = d.get("stamp") or {}
    rows = []
    for key, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        m = d.get(key) or {}
        c, alone, during = m.get("consolidate") or {}, m.get("writes_alone") or {}, m.get("writes_during") or {}
        rows.append([label, c.get("wall_ms"), c.get("duration_ms"), c.get("beliefs"), alone.get("p50_ms"),
                     alone.get("p99_ms"), during.get("p50_ms"), during.get("p99_ms"),
                     during.get("consolidations_meanwhile"), (m.get("loadavg_after") or [None])[0]])
    load = ((stamp_.get("machine") or {}).get("loadavg") or [None])[0]
    lines += [f"One server each, {p.get('episodes')} episodes with {p.get('dim')}-d client vectors in groups of "
              f"{p.get('cluster')}; one POST /consolidate, then {p.get('writes')} remembers (4 clients) alone "
              f"and while runs repeat back to back; run {stamp_.get('date_utc')} (load average at start "
              f"{load}).", "",
              table(["backend", "consolidate wall ms", "in the run ms", "beliefs", "remember P50 ms alone",
                     "P99 alone", "P50 during runs", "P99 during runs", "runs meanwhile", "load after"], rows), "",
              "On PostgreSQL a run clusters holding only the space's advisory lock; writers wait for it only "
              "while it writes (one transaction: the beliefs in one pipelined insert, the cited episodes "
              "marked, the event). What slows writes during runs on both backends is mostly the run's CPU "
              "(clustering, on the same two cores as everything else here).", ""]
    return lines


def section_cognition(r: Results) -> list[str]:
    d = r["cognition"]
    if not isinstance(d.get("recall"), dict):
        return section_generic(r, "cognition", "Cognition (bench/cognition.py)")
    pr = d.get("params") or {}
    lines = [
        "## Cognition (bench/cognition.py, in-process)",
        "",
        f"{fmt(pr.get('memories'))} memories x {pr.get('dim')}-d in one space with associations "
        f"({fmt(get(d, 'load.auto_links'))} auto-links, {fmt(get(d, 'load.explicit_links'))} explicit); "
        f"index: {get(d, 'index.kind', NA)}.",
        "",
        table(
            ["mode / cue", "P50 ms", "P99 ms", "max ms", "mean memories reached"],
            [
                [k, v.get("p50_ms"), v.get("p99_ms"), v.get("max_ms"), v.get("mean_reached")]
                for k, v in d["recall"].items()
                if isinstance(v, dict)
            ],
        ),
        "",
    ]
    c = d.get("consolidation") or {}
    if c:
        lines += [
            f"Consolidation of {fmt(c.get('episodes'))} episodes: **{fmt(c.get('seconds'))} s**, "
            f"{fmt(c.get('beliefs'))} beliefs. Latency of other work before and during the run:",
            "",
        ]
        rows = []
        for phase in ("baseline", "during_consolidation"):
            for where in ("same_space", "other_space"):
                for op in ("remember", "recall"):
                    v = get(c, f"{phase}.{where}.{op}")
                    if isinstance(v, dict):
                        rows.append(
                            [
                                phase.replace("_", " "),
                                where.replace("_", " "),
                                op,
                                v.get("p50_ms"),
                                v.get("p99_ms"),
                                v.get("max_ms"),
                            ]
                        )
        lines += [table(["when", "space", "operation", "P50 ms", "P99 ms", "max ms"], rows), ""]
    return lines


def section_transport(r: Results, name: str, title: str) -> list[str]:
    d = r[name]
    res = d.get("results") if isinstance(d.get("results"), dict) else None
    if not res:
        return section_generic(r, name, title)
    lines = [f"## {title}", ""]
    rows = []
    for op, v in res.items():
        if isinstance(v, dict) and "rate" in v:
            rows.append(
                [
                    op,
                    v.get("clients", d.get("clients", NA)),
                    v.get("rate"),
                    v.get("p50_ms"),
                    v.get("p99_ms"),
                    v.get("errors", NA),
                    v.get("server_cpu_us_per_op", NA),
                ]
            )
    if rows:
        secs = d.get("seconds_per_phase") or get(d, "config.seconds")
        head = ["operation", "clients", "per s", "P50 ms", "P99 ms", "errors", "server CPU us/op"]
        if all(row[-1] is NA for row in rows):  # a transport benchmark that does not measure it
            head, rows = head[:-1], [row[:-1] for row in rows]
        load = get(d, "load_average.before")
        lines += [
            f"{fmt(secs)} s per phase; server and load generator on the same 2 cores"
            + (f" (load average {fmt(load[0])} at the start)." if load else "."),
            "",
            table(head, rows),
            "",
        ]
    ratios = res.get("ratios") or d.get("ratio_to_echo") or {}
    if ratios:
        lines += [table(["ratio", "value"], [[k, v] for k, v in ratios.items()]), ""]
    return lines


def section_multispace(r: Results) -> list[str]:
    d = r["multispace"]
    lines = ["## Multi-space overhead (bench/multispace.py, in-process)", ""]
    if not d:
        return [*lines, f"No results: {r.status('multispace')}.", ""]
    lines += [
        f"{fmt(d.get('total'))} memories x {d.get('dim')} in total, spread evenly over the active spaces; "
        f"{fmt(d.get('queries_per_case'))} recalls (top 10) per case, round-robin over the active spaces; "
        "throughput with 8 concurrent callers. Overheads are against the one-space case; the "
        "'same size' column compares 10 spaces with one space holding one tenth of the data (the same "
        "per-space size), which isolates the cost of tenancy from the smaller searches.",
        "",
    ]
    rows = []
    for key, v in (d.get("cases") or {}).items():
        ov = v.get("overhead_vs_1") or {}
        same = v.get("overhead_vs_same_per_space_size") or {}
        label = {
            "1+idle": f"1 + {fmt(v.get('idle_spaces'))} idle",
            "1-small": "1 (one tenth of the data)",
        }.get(key, key)
        rows.append(
            [
                label,
                f"{fmt(v.get('memories_per_space'))}",
                v.get("p50_ms"),
                v.get("p99_ms"),
                v.get("throughput_1_caller_per_s"),
                v.get("throughput_per_s"),
                f"{ov['p50_pct']:+.1f} %" if ov.get("p50_pct") is not None else NA,
                f"{ov['p99_pct']:+.1f} %" if ov.get("p99_pct") is not None else NA,
                f"{ov['throughput_pct']:+.1f} %" if ov.get("throughput_pct") is not None else NA,
                f"{same['p50_pct']:+.1f} %" if same.get("p50_pct") is not None else NA,
            ]
        )
    lines += [
        table(
            [
                "active spaces",
                "memories/space",
                "P50 ms",
                "P99 ms",
                "recalls/s (1 caller)",
                "recalls/s (8 callers)",
                "P50 vs 1",
                "P99 vs 1",
                "8-caller throughput vs 1",
                "P50 vs same size",
            ],
            rows,
        ),
        "",
    ]
    h = get(r["http"], "results") or {}
    pairs = [(a, b) for a, b in (("remember", "remember_10"), ("recall", "recall_10")) if a in h and b in h]
    if pairs:
        lines += [
            "Through a real server (from bench/http.py, 32 clients): the same operations against one space "
            "and spread round-robin over 10 spaces.",
            "",
            table(
                ["operation", "1 space per s", "10 spaces per s", "10 vs 1", "P99 ms 1 / 10"],
                [
                    [
                        a,
                        h[a].get("rate"),
                        h[b].get("rate"),
                        f"{overhead(h[b].get('rate'), h[a].get('rate')):+.1f} %"
                        if overhead(h[b].get("rate"), h[a].get("rate")) is not None
                        else NA,
                        f"{fmt(h[a].get('p99_ms'))} / {fmt(h[b].get('p99_ms'))}",
                    ]
                    for a, b in pairs
                ],
            ),
            "",
        ]
    return lines


def overhead(value: Any, base: Any) -> float | None:
    if not isinstance(value, (int, float)) or not isinstance(base, (int, float)) or not base:
        return None
    return 100.0 * (value - base) / base


def section_spaces(r: Results) -> list[str]:
    d = r["spaces"]
    lines = ["## Many spaces on a small open-file limit (bench/spaces.py, real server)", ""]
    if not d:
        return [*lines, f"No results: {r.status('spaces')}.", ""]
    hot = d.get("hot_recall") or {}
    lines += [
        f"{fmt(d.get('spaces'))} spaces each created, written and read once over REST by "
        f"{fmt(d.get('concurrency'))} clients, server under `ulimit -n {d.get('nofile')}` "
        f"(budget: {fmt(get(d, 'open_files_at_start.max_loaded_spaces'))} loaded spaces). "
        "Issue 11 target: no error, hot-space recall P99 within 20 %.",
        "",
        table(["figure", "value"], [
            ["errors", d.get("errors")],
            ["churn seconds", d.get("churn_seconds")],
            ["spaces per second", d.get("spaces_per_second")],
            ["max descriptors / limit", f"{fmt(d.get('max_fds'))} / {fmt(d.get('nofile'))}"],
            ["max threads", d.get("max_threads")],
            ["max spaces loaded", d.get("max_spaces_loaded")],
            ["threads at the end (idle)", get(d, "end.threads")],
        ]),
        "",
        table(["hot recall", "P50 ms", "P99 ms", "samples", "failed"], [
            [phase, get(hot, f"{phase}.p50_ms"), get(hot, f"{phase}.p99_ms"), get(hot, f"{phase}.samples"),
             get(hot, f"{phase}.failed")] for phase in ("before", "during", "after")
        ]),
        "",
        f"P99 during vs before: {fmt(hot.get('p99_during_vs_before_pct'))} %; after vs before: "
        f"{fmt(hot.get('p99_after_vs_before_pct'))} % (during: the churn shares the 2 cores with the "
        "hot space).",
        "",
    ]
    return lines


def section_startup(r: Results) -> list[str]:
    d = r["startup"]
    lines = ["## Start-up with many spaces on disk (bench/startup.py, real server)", ""]
    if not d:
        return [*lines, f"No results: {r.status('startup')}.", ""]
    lines += [
        "A real `engram start` process, timed from exec until `/health/alive` answers (median of "
        f"{get(d, 'cases.0.reps') or next(iter(d['cases'].values())).get('reps')} starts); each space on "
        "disk holds a few memories. Spaces load lazily, so the first recall into one of them pays its "
        "open.",
        "",
    ]
    rows = [
        [
            f"{int(k):,}",
            v.get("start_to_alive_s"),
            f"{v.get('start_growth_pct_vs_fewest', 0):+.1f} %",
            v.get("rss_mb_at_alive"),
            v.get("first_recall_in_idle_space_ms"),
            v.get("rss_mb_after_first_recall"),
        ]
        for k, v in sorted(d.get("cases", {}).items(), key=lambda kv: int(kv[0]))
    ]
    lines += [
        table(
            [
                "spaces on disk",
                "start → alive s",
                "vs fewest",
                "RSS MB",
                "first recall in an idle space ms",
                "RSS MB after",
            ],
            rows,
        ),
        "",
    ]
    return lines


def section_scale(r: Results) -> list[str]:
    d = r["scale"]
    lines = ["## Scale and crash recovery (bench/scale.py, real server)", ""]
    if not d:
        return [*lines, f"No results: {r.status('scale')}.", ""]
    lines += [
        "One space filled in-process (durable), index caught up, engine closed; then a real server "
        "opens the root. Recall is end to end over HTTP (aiohttp, one client, top 10 by embedding); "
        "recall@10 is against exact cosine search over the same vectors (Engram ranks by a blend of "
        "similarity, activation, confidence and recency, so a pure-similarity neighbour can be displaced). "
        "RSS per memory is the server's growth after loading the space, divided by its memories.",
        "",
    ]
    rows = []
    crash_rows = []
    for _key, v in (d.get("sizes") or {}).items():
        label = f"{fmt(v.get('memories'))} x {v.get('dim')}" + (
            f" (separate run, {v['separate_run']})" if v.get("separate_run") else ""
        )
        rows.append(
            [
                label,
                v.get("search"),
                v.get("ingest_per_s_inprocess"),
                v.get("index_catch_up_s"),
                v.get("start_to_alive_s"),
                v.get("space_open_first_recall_s"),
                get(v, "recall_http.p50_ms"),
                get(v, "recall_http.p99_ms"),
                v.get("recall_at_10"),
                v.get("rss_bytes_per_memory"),
                v.get("server_rss_mb"),
            ]
        )
        c = v.get("crash")
        if c:
            crash_rows.append(
                [
                    label,
                    c.get("writes_acknowledged"),
                    c.get("restart_to_alive_s"),
                    c.get("then_first_recall_s"),
                    c.get("recovery_total_s"),
                    c.get("acknowledged_missing"),
                    c.get("memories_after"),
                    c.get("expected_at_least"),
                ]
            )
    lines += [
        table(
            [
                "memories",
                "search",
                "ingest/s (in-process)",
                "index catch-up s",
                "start → alive s",
                "space open (first recall) s",
                "HTTP recall P50 ms",
                "P99 ms",
                "recall@10",
                "RSS B/memory",
                "server RSS MB",
            ],
            rows,
        ),
        "",
    ]
    if crash_rows:
        lines += [
            "SIGKILL while 32 HTTP writers were remembering, then restart on the same data root:",
            "",
            table(
                [
                    "space",
                    "writes acknowledged before the kill",
                    "restart → alive s",
                    "then first recall s",
                    "recovery total s",
                    "acknowledged but missing",
                    "memories after",
                    "expected at least",
                ],
                crash_rows,
            ),
            "",
        ]
    if d.get("note_1m"):
        lines += [d["note_1m"], ""]
    return lines


def peer_table(d: dict[str, Any]) -> str:
    e, c, ratio = d["engram"], d["chroma"], d.get("ratios_engram_over_chroma", {})
    pr = d.get("fsync_probe") or {}
    search = f"Engram search: {', '.join(e.get('search', []))}; Chroma: {', '.join(c.get('search', []))}"
    rows = [
        ["ingest (acknowledged), memories/s", e["ingest_per_s"], c["ingest_per_s"],
         ratio.get("ingest_throughput"), "Engram: 1 memory per call, 32 in flight; Chroma: add() of 256"],
    ]  # fmt: skip
    if e.get("ingest_until_indexed_per_s"):
        rows.append(
            ["ingest until searchable by the index, memories/s", e["ingest_until_indexed_per_s"],
             c["ingest_per_s"], ratio.get("ingest_until_indexed_throughput"),
             f"Engram indexes in the background: {fmt(e.get('index_catch_up_after_ingest_s'))} s after the "
             "last acknowledgement; Chroma's add() returns indexed"]
        )  # fmt: skip
    rows += [
        ["single writer, writes/s", e["single_writer_per_s"], c["single_writer_per_s"],
         ratio.get("single_writer_throughput"), "one record per call, one caller"],
        ["query P50 ms", e["query"]["p50_ms"], c["query"]["p50_ms"], ratio.get("query_p50"),
         "Engram: full recall() (scoring, buckets)"],
        ["query P99 ms", e["query"]["p99_ms"], c["query"]["p99_ms"], ratio.get("query_p99"), ""],
        ["recall@10 vs exact", e["recall_at_10"], c["recall_at_10"], ratio.get("recall_at_10"), search],
        ["RSS growth MB", e["rss_growth_mb"], c["rss_growth_mb"], ratio.get("rss_growth"),
         "process RSS after the run minus after imports"],
        ["peak RSS MB", e["peak_rss_mb"], c["peak_rss_mb"], None, ""],
        ["disk MB", e["disk_mb"], c["disk_mb"], ratio.get("disk"), ""],
    ]  # fmt: skip
    if e.get("sqlite_journal") or c.get("sqlite_journal"):
        rows.append(
            ["SQLite journal mode", e.get("sqlite_journal") or NA, c.get("sqlite_journal") or NA, None, ""]
        )
    if pr.get("engram") and pr.get("chroma"):
        rows.append(
            ["fsync calls per acknowledged single write", pr["engram"]["fsyncs_per_write"],
             pr["chroma"]["fsyncs_per_write"], None, f"strace, {pr['engram']['writes']} sequential writes"]
        )  # fmt: skip
    return table(["", "Engram", "Chroma", "Engram/Chroma", "note"], rows)


def section_peer(r: Results) -> list[str]:
    d = r["peer_chroma"]
    lines = ["## Peer: Chroma (bench/peer_chroma.py)", ""]
    if not d or "engram" not in d:
        return [*lines, f"No results: {r.status('peer_chroma')}.", ""]
    lines += [
        f"chromadb {d.get('chromadb_version')} in its own venv (bench/.venv-chroma), `PersistentClient` with "
        f"one tenant + database per space. Workload: {d.get('spaces')} spaces x {fmt(d.get('per_space'))} "
        f"memories x {d.get('dim')}-d (same vectors and ids on both sides), "
        f"{fmt(d.get('queries_per_space'))} single queries per space (top 10). Both sides run embedded, each "
        "in its own process.",
        "",
        peer_table(d),
        "",
    ]
    for extra in r.extra_peers:
        lines += [
            f"A larger single space, measured separately on {extra.get('date_utc')} "
            f"(`bench/peer_chroma.py --spaces {extra.get('spaces')} --per-space {extra.get('per_space')}`, "
            f"bench/results/{extra['file']}):",
            "",
            peer_table(extra),
            "",
        ]
    lines += [
        "Engram's recall@10 is below 1 even where its vector search is exact: recall ranks candidates by "
        "0.7 x similarity + 0.1 x (activation + confidence + recency), and recalling a memory strengthens "
        "it, so a memory returned earlier can displace a slightly closer one. Chroma returns pure nearest "
        "neighbours.",
        "",
    ]
    dur = d.get("durability") or {}
    if dur:
        lines += ["Durability: " + "; ".join(f"**{k}**: {v}" for k, v in dur.items()) + ".", ""]
    if d.get("chroma_install_seconds"):
        lines += [
            f"(Chroma's venv was installed in this run: {d['chroma_install_seconds']} s, not counted above.)",
            "",
        ]
    return lines


def section_semantic(r: Results) -> list[str]:
    d = r["semantic"]
    lines = ["## Embedding latency and text recall (bench/semantic.py, in-process)", ""]
    if not d.get("searchable"):
        return [*lines, f"No results: {r.status('semantic')}.", ""]
    p, emb = d.get("params") or {}, d.get("embedders") or {}
    some = next(iter(emb.values()), {})
    lines += [
        f"Durable (fsync) remembers of ~{fmt(p.get('text_chars_mean'))}-character texts without an "
        f"embedding; one background worker embeds them in batches of {fmt(some.get('batch_size'))} "
        f"(torch threads: {fmt(some.get('torch_threads'))}). Load average at start / end: "
        f"{get(d, 'machine.loadavg')} / {d.get('load_average_end')}."
        + (
            f" **Incomplete run** ({d.get('stopped', 'stopped early')}): parts below are what finished."
            if d.get("complete") is False
            else ""
        ),
        "",
        "**Acknowledgement to vector-searchable** (paced writer, "
        f"{fmt(p.get('seconds_per_phase'))} s per rate; a poller every {fmt(p.get('poll_ms'))} ms; "
        "`none` writes client vectors, so its figures are the poller's resolution):",
        "",
    ]
    rows = []
    for lb, phases in d["searchable"].items():
        for rate, v in phases.items():
            s = v.get("searchable") or {}
            rows.append(
                [
                    lb,
                    rate,
                    v.get("achieved_per_s"),
                    s.get("p50_ms"),
                    s.get("p95_ms"),
                    s.get("p99_ms"),
                    s.get("max_ms"),
                    v.get("backlog_end"),
                    v.get("embedded_per_s_while_writing"),
                    v.get("drain_per_s"),
                    get(emb, f"{lb}.model_texts_per_s"),
                    "yes" if v.get("keeps_up") else "**no**",
                ]
            )
    header = [
        "embedder",
        "writes/s asked",
        "achieved",
        "P50 ms",
        "P95 ms",
        "P99 ms",
        "max ms",
        "backlog at end",
        "embedded/s while writing",
        "drain/s after",
        "model alone/s",
        "keeps up",
    ]
    lines += [table(header, rows), ""]
    rem = d.get("remember_1client") or {}
    if rem:
        lines += [
            f"**Remember latency, one client**, sequential, {fmt(rem.get('writes'))} writes per embedder in "
            f"{fmt(rem.get('rounds'))} alternating rounds (each round starts with nothing pending; its "
            "embedding competes with its writes for the 2 cores):",
            "",
        ]
        rows = [
            [
                lb,
                v.get("p50_ms"),
                v.get("p99_ms"),
                v.get("per_s"),
                v.get("p50_ratio_to_none"),
                v.get("p99_ratio_to_none"),
                v.get("throughput_ratio_none_to_this"),
                v.get("mean_backlog_at_round_end"),
            ]
            for lb, v in rem.items()
            if isinstance(v, dict)
        ]
        header = [
            "embedder",
            "P50 ms",
            "P99 ms",
            "writes/s",
            "P50 / none",
            "P99 / none",
            "throughput none / this",
            "backlog at round end",
        ]
        lines += [table(header, rows), ""]
    tr = d.get("text_recall") or {}
    if tr:
        first = next(iter(tr.values()))
        match = first.get("fts_match_fraction_mean")
        lines += [
            f"**Recall by text** (`Cue(query=q, max_results=10)`; {fmt(first.get('questions'))} distinct "
            f"questions of ~{fmt(first.get('mean_words'))} words, one at a time, backlog drained). Query "
            "embedding: from the recall's metadata; *client*: the same cue with a precomputed embedding. "
            + (
                f"Each question's words match {100 * match:.0f} % of the memories on average."
                if match
                else ""
            ),
            "",
        ]
        cols = [
            "text_query.p50_ms",
            "text_query.p95_ms",
            "text_query.p99_ms",
            "query_embedding.p50_ms",
            "query_embedding.p99_ms",
            "client_embedding.p50_ms",
            "client_embedding.p99_ms",
            "vector_only.p50_ms",
        ]
        rows = [[lb, v.get("memories"), *(get(v, c) for c in cols)] for lb, v in tr.items()]
        header = [
            "embedder",
            "memories",
            "P50 ms",
            "P95 ms",
            "P99 ms",
            "query embedding P50 ms",
            "query embedding P99 ms",
            "client P50 ms",
            "client P99 ms",
            "vector only P50 ms",
        ]
        lines += [table(header, rows), ""]
    tg = d.get("targets") or {}
    if tg:
        rows = [
            [t["label"], f"{fmt(t['measured'])}{t.get('unit', '')}", "met" if t["met"] else "**missed**"]
            for t in tg.values()
        ]
        lines += [table(["target", "measured", "verdict"], rows), ""]
    return lines


def headlines(r: Results) -> list[str]:
    out = []
    p = r["peer_chroma"].get("ratios_engram_over_chroma")
    if p:
        out.append(
            f"Engram/Chroma: ingest x{fmt(p.get('ingest_throughput'))}, single-writer x"
            f"{fmt(p.get('single_writer_throughput'))}, query P50 x{fmt(p.get('query_p50'))}, P99 x"
            f"{fmt(p.get('query_p99'))}, recall@10 x{fmt(p.get('recall_at_10'))}, RSS growth x"
            f"{fmt(p.get('rss_growth'))} (lower is better for latency and memory)."
        )

    def rate(d: dict[str, Any], op: str) -> str:
        v = get(d, f"results.{op}")
        if not isinstance(v, dict) or "rate" not in v:
            return ""
        return f"{op} {fmt(v['rate'])}/s (P50 {fmt(v.get('p50_ms'))} / P99 {fmt(v.get('p99_ms'))} ms)"

    for name, label, ops in (
        (
            "http",
            "REST",
            ("echo", "remember", "recall", "echo_1client", "remember_1client", "recall_1client"),
        ),
        ("grpc", "gRPC", ("echo", "remember", "recall", "echo_stream", "streaming_remember")),
        (
            "grpc_1client",
            "gRPC, 1 client",
            ("echo", "remember", "recall", "echo_stream", "streaming_remember"),
        ),
    ):
        figures = [x for x in (rate(r[name], op) for op in ops) if x]
        if figures:
            out.append(f"{label}: " + "; ".join(figures) + ".")
    from report_recall import headlines as recall_headlines

    out += recall_headlines(r["peer_chroma_server"], r["recall_scaling"], r["text_query"])
    gr = get(r["grpc"], "results.ratios")
    if gr:
        out.append(
            f"gRPC vs echo: unary Remember at {fmt(100 * gr['remember_vs_echo'], 0)} % of Echo; "
            "StreamingRemember "
            f"at {fmt(100 * gr['streaming_remember_vs_echo_stream'], 0)} % of EchoStream."
        )
    hv = http_remember_ratio(r["http"])
    if hv:
        rc = get(r["http"], "ratio_to_echo.recall")
        out.append(
            f"REST vs echo: remember at {fmt(100 * hv[1], 0)} % of the echo route"
            + (f", recall at {fmt(100 * rc, 0)} %." if isinstance(rc, (int, float)) else ".")
        )
    ten = get(r["multispace"], "cases.'10'")
    idle = get(r["multispace"], "cases.'1+idle'")
    if ten:
        out.append(
            f"Multi-space recall P50: 10 active spaces {ten['overhead_vs_1']['p50_pct']:+.1f} % "
            "against 1 space "
            "holding the same total data (each search is a tenth the size), "
            f"{get(ten, 'overhead_vs_same_per_space_size.p50_pct', 0):+.1f} % against 1 space of the same "
            "per-space size"
            + (
                f"; 1 space with {fmt(idle['idle_spaces'])} idle spaces beside it "
                f"{idle['overhead_vs_1']['p50_pct']:+.1f} %."
                if idle
                else "."
            )
        )
    sizes = get(r["scale"], "sizes") or {}
    for _key, v in sizes.items():
        sep = f" (separate run of {v['separate_run']})" if v.get("separate_run") else ""
        out.append(
            f"Server at {fmt(v['memories'])} x {v['dim']}{sep}: "
            f"HTTP recall P50 {fmt(get(v, 'recall_http.p50_ms'))} "
            f"ms / P99 {fmt(get(v, 'recall_http.p99_ms'))} ms, recall@10 {fmt(v.get('recall_at_10'))}, "
            f"{fmt(v.get('rss_bytes_per_memory'))} B RSS per memory"
            + (
                f"; recovery after SIGKILL {fmt(v['crash']['recovery_total_s'])} s with "
                f"{fmt(v['crash']['acknowledged_missing'])} acknowledged writes missing."
                if "crash" in v
                else "."
            )
        )
    if r.has("quality"):
        from report_quality import quality_headline

        q = quality_headline(r["quality"])
        if q:
            out.append(q)
    st = get(r["startup"], "cases") or {}
    if st:
        out.append(
            "Start-up: "
            + ", ".join(
                f"{fmt(int(k))} spaces {fmt(v['start_to_alive_s'])} s"
                for k, v in sorted(st.items(), key=lambda kv: int(kv[0]))
            )
            + "."
        )
    return out


def gaps(r: Results) -> list[str]:
    """What this run did not measure, said plainly."""
    out = []
    for name, st in r.run.get("steps", {}).items():
        if st.get("status") != "ok":
            out.append(f"{name}: {st.get('status')}" + (f" — {st['note']}" if st.get("note") else ""))
    for name, label in (("http", "REST"), ("grpc", "gRPC")):
        res = get(r[name], "results") or {}
        if name == "grpc" and r.has("grpc_1client"):
            continue
        if r.has(name) and not any(
            isinstance(v, dict) and (v.get("clients") == 1 or "1client" in k) for k, v in res.items()
        ):
            out.append(
                f"{label} with 1 client: not measured by bench/{name}.py (it measures "
                f"{r[name].get('clients') or get(r[name], 'config.clients')} concurrent clients only)."
            )
    sizes = get(r["scale"], "sizes") or {}
    for extra in r.separate_1m:
        dims = sorted({v.get("dim") for v in (extra.get("sizes") or {}).values()})
        out.append(
            f"1M memories ({', '.join(f'{d}-d' for d in dims)}): not part of this run; "
            "shown from a separate run "
            f"of `bench/scale.py --sizes none --with-1m` on {extra.get('date_utc')} "
            f"(bench/results/{extra['file']})."
        )
    if (
        not r.separate_1m
        and r.has("scale")
        and not any(int(v.get("memories", 0)) >= 1_000_000 for v in sizes.values())
    ):
        out.append(
            "1M memories: not run in this run (enable with `python3 run.py bench --with-1m`; uses 128-d)."
        )
    if r.has("scale") and not any(int(v.get("memories", 0)) >= 100_000 for v in sizes.values()):
        out.append("100k memories through the server: not run (quick mode or --sizes).")
    return out


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def build_report(out_dir: Path = RESULTS, quick: bool = False) -> Path:
    r = Results(out_dir)
    img_dir = DOCS / "img" / ("quick" if quick else "")
    img_dir.mkdir(parents=True, exist_ok=True)
    md_path = DOCS / ("benchmarks-quick.md" if quick else "benchmarks.md")
    run = r.run
    m = run.get("machine", {})
    vers = dict(run.get("versions", {}))
    vers["chromadb"] = r["peer_chroma"].get("chromadb_version")
    lines = [
        "# Engram benchmarks" + (" (quick run)" if quick else ""),
        "",
        f"Generated by `python3 run.py bench{' --quick' if quick else ''}` on {run.get('date_utc', NA)} "
        f"(git {run.get('git', NA)}); total {fmt(run.get('seconds_total'))} s. "
        "Do not edit: rerun the command. "
        "Results JSON: `" + _rel(out_dir) + "/`.",
        "",
        "## Machine and versions",
        "",
        table(
            ["", ""],
            [
                ["CPU", m.get("cpu", NA)],
                ["cores", m.get("cores")],
                ["RAM", f"{mb(m.get('ram_bytes')) / 1024:.1f} GiB" if m.get("ram_bytes") else NA],
                ["platform", m.get("platform", NA)],
                ["load average at start / end", f"{m.get('loadavg')} / {run.get('loadavg_end')}"],
                *[[k, v or NA] for k, v in vers.items()],
            ],
        ),
        "",
        "Client and server share the same 2 cores in every end-to-end figure; absolute numbers drift between "
        "runs, ratios measured in the same run hold better.",
        "",
        "## The run",
        "",
        table(
            ["step", "what", "status", "seconds", "note"],
            [
                [k, v.get("what", ""), r.status(k), v.get("seconds"), (v.get("note") or "").replace("|", "/")]
                for k, v in run.get("steps", {}).items()
            ],
        ),
        "",
        "## Headlines",
        "",
        *[f"- {h}" for h in headlines(r)],
        "",
        "## Not measured in this run",
        "",
        *([f"- {g}" for g in gaps(r)] or ["- Nothing: every step ran and wrote results."]),
        "",
        "## Targets (issues 2-5, 7; recall quality)",
        "",
        table(["issue", "target", "measured", "verdict", "source"], [t.row() for t in targets(r)]),
        "",
        "## Plots",
        "",
    ]
    rel = "img/" + ("quick/" if quick else "")
    for fn, name, alt in (
        (plot_spaces, "latency-vs-spaces.png", "Recall latency vs number of spaces"),
        (plot_size, "latency-vs-size.png", "Recall latency vs space size"),
        (plot_startup, "startup-vs-spaces.png", "Start-up vs spaces on disk"),
        (plot_quality, "quality-recall-at-10.png", "Recall@10 by question kind, Engram and baselines"),
    ):
        p = fn(r, img_dir / name)
        lines += [f"![{alt}]({rel}{name})" if p else f"({alt}: no data in this run.)", ""]
    lines += section_engine(r)
    lines += section_cognition(r)
    lines += section_transport(r, "http", "REST (bench/http.py)")
    lines += section_transport(r, "grpc", "gRPC (bench/grpc.py)")
    if "grpc_1client" in r.run.get("steps", {}):
        lines += section_transport(r, "grpc_1client", "gRPC, one client (bench/grpc.py --clients 1)")
    lines += section_multispace(r)
    if "spaces" in r.run.get("steps", {}) or r.has("spaces"):
        lines += section_spaces(r)
    lines += section_startup(r)
    lines += section_scale(r)
    lines += section_peer(r)
    from report_recall import section_peer_server, section_profile, section_scaling, section_text

    lines += section_peer_server(r["peer_chroma_server"], r.status("peer_chroma_server"))
    lines += section_scaling(r["recall_scaling"], r.status("recall_scaling"))
    lines += section_text(r["text_query"], r.status("text_query"))
    lines += section_profile()
    lines += section_batch(r["batch"], r.status("batch"))
    lines += section_postgres(r["postgres"], r.status("postgres"))
    lines += section_pg_consolidation(r["pg_consolidation"], r.status("pg_consolidation"))
    if "semantic" in r.run.get("steps", {}) or r.has("semantic"):
        lines += section_semantic(r)
    if "subscribers" in r.run.get("steps", {}) or r.has("subscribers"):
        lines += section_generic(r, "subscribers", "SSE fan-out (bench/subscribers.py)")
    if r.has("http_hostile"):
        lines += section_generic(r, "http_hostile", "Hostile HTTP clients (bench/http_hostile.py)")
    if "quality" in r.run.get("steps", {}) or r.has("quality"):
        from report_quality import section_quality

        lines += section_quality(r["quality"], r.status("quality"))
    lines += [
        "## Running it",
        "",
        "```bash",
        "python3 run.py bench                 # everything, < 15 min; results in bench/results/, this file",
        "python3 run.py bench --quick         # < 3 min: bench/results/quick/, docs/benchmarks-quick.md",
        "python3 run.py bench --only scale,peer_chroma   # a subset; other steps keep their last results",
        "python3 run.py bench --report-only   # rebuild this file from the JSON",
        "# 1M memories (128-d by default, --dim-1m 768 for full size), outside the time budget:",
        ".venv/bin/python bench/scale.py --sizes none --with-1m --out bench/results/scale_1m-128d.json",
        "```",
        "",
        "Each step is a script under bench/ that also runs alone (`--help`). Logs of the last run: "
        f"`{_rel(out_dir / 'logs')}/`.",
    ]
    md_path.write_text("\n".join(lines).rstrip() + "\n")
    return md_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--quick", action="store_true", help="the quick run's results and report")
    args = ap.parse_args()
    out = build_report(RESULTS / "quick" if args.quick else RESULTS, quick=args.quick)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
