"""Crash-test child: writes to several spaces from many threads, printing each acknowledgement.

    python engine_writer.py <data_dir> <seed> <space> [<space> ...]

Prints ``ACK <space> <id>`` after ``remember`` returned, ``TRY <space> <id>``
before a ``forget(delete)`` starts and ``DEL <space> <id>`` after it returned, one complete
line per write, flushed at once. Runs until killed (the parent SIGKILLs it).
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from engram.core.models import ForgetMode, MemoryInput
from engram.settings import load_settings
from engram.spaces.registry import SpaceRegistry

DIM = 16
WRITERS_PER_SPACE = 4


def main() -> None:
    data_dir, seed, spaces = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    settings = load_settings(
        overrides={"data_dir": data_dir, "bootstrap_spaces": tuple(spaces), "exact_search_max": 40,
                   "index_checkpoint_every": 60},
        use_env=False,
    )
    reg = SpaceRegistry(settings)
    out_lock = threading.Lock()

    def emit(line: str) -> None:
        with out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def writer(space: str, w: int) -> None:
        rng = np.random.default_rng(seed * 1000 + w + 17 * len(space))
        handle = reg.get(space)
        mine: list[str] = []
        i = 0
        while True:
            mid = f"{space}-s{seed}-{w}-{i}"
            handle.remember(MemoryInput(id=mid, content=f"{space} payload {w} {i}",
                                        embedding=rng.standard_normal(DIM).tolist()))
            emit(f"ACK {space} {mid}")
            mine.append(mid)
            i += 1
            if len(mine) > 5 and rng.random() < 0.1:
                victim = mine.pop(int(rng.integers(0, len(mine))))
                emit(f"TRY {space} {victim}")  # from here on it may be gone: the delete may commit
                handle.forget(victim, ForgetMode.delete)
                emit(f"DEL {space} {victim}")

    threads = [threading.Thread(target=writer, args=(s, w), daemon=True)
               for s in spaces for w in range(WRITERS_PER_SPACE)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
