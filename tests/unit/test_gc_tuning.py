"""``gc_young_threshold``: the server's start-up garbage collected, the rest frozen, and the youngest
generation's threshold set (the real ``gc`` module, in a child interpreter so this test process
keeps its own collector); tests/integration/test_server_blas.py checks a started server."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from engram.errors import InvalidInput
from engram.settings import Settings

_CHILD = """
import gc, json, sys, weakref
from engram.server import tune_gc
before = gc.get_threshold()
# A reference cycle left over from the start-up: collected first, never frozen.
class Cycle: pass
c = Cycle(); c.me = c; alive = weakref.ref(c); del c
got = tune_gc(int(sys.argv[1]))
left = int(alive() is not None)
print(json.dumps({"before": before, "got": got, "now": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "cycles_left": left}))
"""


def tuned(young: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(young)], capture_output=True, text=True,
                         check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_threshold_collects_freezes_and_sets_the_youngest_generation() -> None:
    assert Settings().gc_young_threshold == 50_000
    r = tuned(50_000)
    before = r["before"]
    assert r["got"] == r["now"] == [50_000, before[1], before[2]]
    assert r["frozen"] > 1_000  # the modules' objects, frozen
    assert r["cycles_left"] == 0  # the cycle was collected before the freeze, not frozen with it


def test_zero_leaves_pythons_defaults_and_freezes_nothing() -> None:
    r = tuned(0)
    assert r["got"] == r["now"] == r["before"]
    assert r["frozen"] == 0


def test_a_negative_threshold_is_refused() -> None:
    with pytest.raises(InvalidInput, match="gc_young_threshold"):
        Settings(gc_young_threshold=-1)


_SPACES_CHILD = """
import gc, json, sys, tempfile, weakref
from pathlib import Path
from engram.core.models import MemoryInput
from engram.server import FrozenSpaces, tune_gc
from engram.testing import make_service
svc = make_service(Path(tempfile.mkdtemp()), ["boot"], embedder="none")
svc.space("boot").remember(MemoryInput(content="kept", embedding=[1.0, 2.0, 3.0]))
alive = weakref.ref(svc.space("boot"))
tune_gc(int(sys.argv[1]))
frozen = FrozenSpaces(svc.registry.loaded())
early = frozen.release()  # nothing closed yet
svc.registry.unload_idle(0.0)
gc.collect()
held = alive() is not None
released = frozen.release()
gc.collect()
print(json.dumps({"early": early, "held": held, "released": released, "gone": alive() is None,
                  "again": frozen.release(), "frozen": gc.get_freeze_count()}))
svc.close()
"""


def spaces_child(young: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _SPACES_CHILD, str(young)], capture_output=True, text=True,
                         check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_space_frozen_at_start_is_freed_once_closed() -> None:
    """A space open at start-up is frozen with everything else; its reference cycles would keep it
    (vectors and all) after it is unloaded. ``FrozenSpaces.release`` undoes the freeze then."""
    r = spaces_child(50_000)
    assert r["early"] is False
    assert r["held"] is True  # frozen: the unloaded space survives a full collection
    assert r["released"] is True and r["gone"] is True and r["frozen"] == 0
    assert r["again"] is False


def test_nothing_frozen_nothing_to_release() -> None:
    r = spaces_child(0)
    assert r["early"] is False and r["released"] is False
    assert r["held"] is False and r["gone"] is True
