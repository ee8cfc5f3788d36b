"""The Chroma side of bench/peer_chroma.py. Runs in bench/.venv-chroma, never in Engram's venv.

    python peer_chroma_side.py --data DIR --out FILE [--probe N]

Reads ``DIR/spaces.json`` and the ``.npy`` files beside it, ingests each space into
its own tenant + database of one ``PersistentClient`` root (collection
``memories``, cosine HNSW), runs the queries one at a time, and writes timings,
returned ids and RSS as JSON. Only chromadb, numpy and psutil are imported here.
"""

from __future__ import annotations

import _pathfix  # noqa: F401  (first: see its docstring)

# isort: split
import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import psutil


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


def sqlite_journal(db: Path) -> str:
    """The journal mode a SQLite file was left in (header bytes 18-19: 1 rollback, 2 WAL)."""
    try:
        head = db.read_bytes()[:20]
    except OSError:
        return "unknown"
    return {1: "rollback journal", 2: "WAL"}.get(head[18], "unknown") if len(head) >= 20 else "unknown"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--root", required=True, help="Chroma persist directory")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--probe", type=int, default=0, help="only run N single adds (for the fsync probe)")
    args = ap.parse_args()

    import chromadb
    from chromadb.config import Settings

    data = Path(args.data)
    spec = json.loads((data / "spaces.json").read_text())
    settings = Settings(is_persistent=True, persist_directory=args.root, anonymized_telemetry=False)
    admin = chromadb.AdminClient(settings)
    base_rss = rss()

    def collection(space: str):  # type: ignore[no-untyped-def]
        admin.create_tenant(space)
        admin.create_database(space, tenant=space)
        client = chromadb.PersistentClient(path=args.root, tenant=space, database=space, settings=settings)
        return client.get_or_create_collection(
            "memories", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )

    if args.probe:
        vecs = np.load(data / f"{spec['spaces'][0]}.vectors.npy")[: args.probe]
        col = collection("fsync-probe")
        col.add(ids=["warm"], embeddings=vecs[:1], documents=["warm"])
        sys.stderr.write("probe-start\n")
        Path(args.out + ".start").write_text("")  # marker the strace log can be cut at
        t0 = time.perf_counter()
        for i, v in enumerate(vecs):
            col.add(ids=[f"p{i}"], embeddings=v[None, :], documents=[f"memory {i}"])
        el = time.perf_counter() - t0
        Path(args.out + ".end").write_text("")
        Path(args.out).write_text(json.dumps({"probe_writes": len(vecs), "seconds": el}))
        return

    out: dict = {"chromadb": chromadb.__version__, "batch": args.batch, "spaces": {}}
    ingest_total = 0.0
    for space in spec["spaces"]:
        vecs = np.load(data / f"{space}.vectors.npy")
        queries = np.load(data / f"{space}.queries.npy")
        col = collection(space)
        ids = [f"m{i}" for i in range(len(vecs))]
        docs = [f"memory {i} about topic {i % 97}" for i in range(len(vecs))]
        t0 = time.perf_counter()
        for s in range(0, len(vecs), args.batch):
            col.add(
                ids=ids[s : s + args.batch],
                embeddings=vecs[s : s + args.batch],
                documents=docs[s : s + args.batch],
            )
        ingest = time.perf_counter() - t0
        ingest_total += ingest
        for q in queries[:5]:
            col.query(query_embeddings=q[None, :], n_results=10)
        lat, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            res = col.query(query_embeddings=q[None, :], n_results=10)
            lat.append((time.perf_counter() - t0) * 1000)
            found.append([int(i[1:]) for i in res["ids"][0]])
        out["spaces"][space] = {
            "memories": len(vecs),
            "ingest_seconds": ingest,
            "latency_ms": lat,
            "found": found,
        }
    # single adds (one record per call, the way a per-request server would write), in a space of its own
    single = np.load(data / f"{spec['spaces'][0]}.vectors.npy")[: spec["single_writes"]]
    col = collection("single-writes")
    t0 = time.perf_counter()
    for i, v in enumerate(single):
        col.add(ids=[f"s{i}"], embeddings=v[None, :], documents=[f"memory {i}"])
    out["single_writer"] = {"writes": len(single), "seconds": time.perf_counter() - t0}
    out["ingest_seconds_total"] = ingest_total
    out["rss_base_bytes"] = base_rss
    out["rss_bytes"] = rss()
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["sqlite_journal"] = sqlite_journal(Path(args.root) / "chroma.sqlite3")
    out["disk_bytes"] = sum(p.stat().st_size for p in Path(args.root).rglob("*") if p.is_file())
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    main()
