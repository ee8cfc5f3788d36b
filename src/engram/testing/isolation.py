"""The multi-space isolation matrix: a dataset, transports, and checks that *return* violations.

The dataset is built so that a leak is visible whatever the surface:

* every space holds the same **shared** ids (``shared-*``, ``ep-*``) with
  identical content and identical embeddings; the only difference is
  ``metadata["space"]``, so a shared memory borrowed from a sibling shows up
  by its tag even though its id and content are the same here;
* every space also holds **own** ids (``own.<space>.<j>``, ``ep-own.<space>``)
  with content and embeddings identical across spaces, so surfaces that
  return only ids (citations, activation paths, recognition matches,
  completion sources) expose a sibling's memory by its id;
* space *k* holds ``k + 1`` own memories, so every space has a different
  count and a count that includes a sibling is wrong.

A check never asserts: it returns a list of human-readable violations, so
the same code runs in the isolation test (expects none) and in the leak
demonstration against ``engram.testing.leaky`` (expects some). Responses are
scanned generically (:func:`scan`) so the checks hold for the REST JSON and
the gRPC messages (as dicts) alike.
"""

from __future__ import annotations

import math
import queue
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clients import GrpcSpaceClient, RestSpaceClient

DIM = 8
N_SHARED = 6
N_EPISODES = 4
EPOCH = 1_700_000_000  # episodes happen at fixed instants, so results do not depend on the clock

SHARED_TEXT = [
    "the espresso machine is on the third floor",
    "standup meeting moved to ten thirty",
    "the staging database password rotates monthly",
    "alice prefers tea over coffee",
    "the build server runs nightly at two",
    "quarterly report due friday",
]
OWN_TEXT = "private note number {j} about the orchard"
EPISODE_TEXT = "debugging the payment service outage with bob"


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [round(x / n, 6) for x in v]


def shared_vec(i: int) -> list[float]:
    v = [0.05] * DIM
    v[i % DIM] = 1.0
    return unit(v)


def own_vec(j: int) -> list[float]:
    v = [0.05] * DIM
    v[(j + 3) % DIM] = 0.9
    v[(j + 4) % DIM] = 0.4
    return unit(v)


def episode_vec(i: int) -> list[float]:
    v = [0.3] * DIM
    v[DIM - 1] = 1.0
    v[DIM - 2] = 0.8 + 0.02 * i  # near-identical: one cluster -> one belief
    return unit(v)


@dataclass
class SpaceData:
    space: str
    index: int
    memories: list[dict[str, Any]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    associations: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ids(self) -> set[str]:
        return {m["id"] for m in self.memories} | {e["id"] for e in self.episodes}

    @property
    def own_ids(self) -> set[str]:
        return {i for i in self.ids if self.space in i}

    @property
    def count(self) -> int:
        return len(self.memories) + len(self.episodes)


def build_dataset(spaces: Iterable[str]) -> dict[str, SpaceData]:
    out: dict[str, SpaceData] = {}
    for k, sp in enumerate(spaces):
        d = SpaceData(sp, k)
        tag = {"space": sp}
        for i in range(N_SHARED):
            d.memories.append(
                {
                    "id": f"shared-{i}",
                    "content": SHARED_TEXT[i],
                    "embedding": shared_vec(i),
                    "metadata": tag,
                    "confidence": 0.8,
                }
            )
        for j in range(k + 1):
            d.memories.append(
                {
                    "id": f"own.{sp}.{j}",
                    "content": OWN_TEXT.format(j=j),
                    "embedding": own_vec(j),
                    "metadata": tag,
                    "confidence": 0.8,
                }
            )
        for i in range(N_EPISODES):
            d.episodes.append(
                {
                    "id": f"ep-{i}",
                    "what": EPISODE_TEXT,
                    "when": EPOCH + 60 * i,
                    "embedding": episode_vec(i),
                    "metadata": tag,
                    "who": ["bob"],
                    "where_location": "office",
                    "importance": 0.8,
                }
            )
        d.episodes.append(
            {
                "id": f"ep-own.{sp}",
                "what": EPISODE_TEXT,
                "when": EPOCH + 60 * N_EPISODES,
                "embedding": episode_vec(N_EPISODES),
                "metadata": tag,
                "who": ["bob"],
                "where_location": "office",
                "importance": 0.8,
            }
        )
        # Spreading reaches the own memory from a shared one that shares no words or vector with it.
        d.associations.append(("shared-0", f"own.{sp}.0"))
        d.associations.append((f"own.{sp}.0", "ep-0"))
        out[sp] = d
    return out


# ----------------------------------------------------------------------------- scanning responses

ID_KEYS = {"memory_id", "episode_id", "source_id", "target_id"}
ID_LIST_KEYS = {"memory_ids", "source_memory_ids", "from_memory_ids"}
OWN_RE = re.compile(r"^(?:own|ep-own|probe)\.(?P<space>[a-z0-9][a-z0-9_-]*)(?:\..*)?$")


@dataclass
class Scan:
    ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # metadata["space"] values seen
    space_fields: list[str] = field(default_factory=list)  # memory_space_id values seen


def scan(obj: Any, out: Scan | None = None) -> Scan:
    """Collect every memory id, space tag and ``memory_space_id`` anywhere in a decoded response."""
    out = out if out is not None else Scan()
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict) and "space" in meta and isinstance(meta["space"], str):
            out.tags.append(meta["space"])
        if (
            isinstance(obj.get("id"), str)
            and ("metadata" in obj or "content" in obj)
            and not {"citations", "centroid", "strength", "run_id"} & obj.keys()
        ):
            out.ids.append(obj["id"])  # a memory (beliefs have content too, but cite instead)
        for key, value in obj.items():
            if key in ID_KEYS and isinstance(value, str) and value:
                out.ids.append(value)
            elif key in ID_LIST_KEYS and isinstance(value, list):
                out.ids.extend(v for v in value if isinstance(v, str))
            elif key == "memory_space_id" and isinstance(value, str) and value:
                out.space_fields.append(value)
            elif key != "metadata":
                scan(value, out)
    elif isinstance(obj, list):
        for v in obj:
            scan(v, out)
    return out


def owner_of(memory_id: str) -> str | None:
    m = OWN_RE.match(memory_id)
    if not m:
        return None
    return m.group("space")


def foreign(space: str, s: Scan, allowed_ids: set[str] | None = None) -> list[str]:
    """Violations in one scanned response of ``space``."""
    bad = []
    for tag in s.tags:
        if tag != space:
            bad.append(f"memory tagged for space {tag!r}")
    for sf in s.space_fields:
        if sf != space:
            bad.append(f"memory_space_id {sf!r}")
    for mid in s.ids:
        owner = owner_of(mid)
        if owner is not None and owner != space:
            bad.append(f"id {mid!r} of space {owner!r}")
        elif allowed_ids is not None and mid not in allowed_ids and not mid.startswith("probe."):
            bad.append(f"id {mid!r} never stored in this space")
    return bad


# ----------------------------------------------------------------------------- transports


class NotFoundError(Exception):
    pass


class Ops:
    """One transport's view of one space. Methods return decoded responses (dicts)."""

    transport = "?"

    def __init__(self, space: str) -> None:
        self.space = space

    # the methods a transport implements
    def remember(self, m: dict[str, Any]) -> Any:
        raise NotImplementedError

    def experience(self, e: dict[str, Any]) -> Any:
        raise NotImplementedError

    def associate(self, a: str, b: str) -> Any:
        raise NotImplementedError

    def recall(self, **cue: Any) -> Any:
        raise NotImplementedError

    def list_all(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def get(self, memory_id: str) -> Any:
        raise NotImplementedError  # raises NotFoundError

    def recognize(self, content: str) -> Any:
        raise NotImplementedError

    def reminisce(self) -> Any:
        raise NotImplementedError

    def complete(self) -> Any:
        raise NotImplementedError

    def consolidate(self) -> Any:
        raise NotImplementedError

    def beliefs(self) -> Any:
        raise NotImplementedError

    def dream(self) -> Any:  # the streamed consolidation (gRPC Dream); REST: the consolidation report
        return self.consolidate()

    def memory_count(self) -> int:
        raise NotImplementedError  # introspection / descriptor

    #: whether :meth:`streaming_recall` exists on this transport (gRPC StreamingRecall)
    streams_recall = False

    def streaming_recall(self, cues: list[dict[str, Any]]) -> list[Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _ClientOps(Ops):
    """The operations both test clients (``RestSpaceClient``, ``GrpcSpaceClient``) spell alike."""

    c: RestSpaceClient | GrpcSpaceClient

    def close(self) -> None:
        self.c.close()

    def remember(self, m: dict[str, Any]) -> Any:
        return self.c.remember(**m)

    def experience(self, e: dict[str, Any]) -> Any:
        return self.c.experience(**e)

    def associate(self, a: str, b: str) -> Any:
        return self.c.associate(a, b, 0.9)

    def recall(self, **cue: Any) -> Any:
        return self.c.recall(**cue)

    def list_all(self) -> list[dict[str, Any]]:
        return self.c.list_all()

    def recognize(self, content: str) -> Any:
        return self.c.recognize(content=content, threshold=0.5)


class RestOps(_ClientOps):
    transport = "rest"
    c: RestSpaceClient

    def __init__(self, base_url: str, space: str) -> None:
        from .clients import RestSpaceClient

        super().__init__(space)
        self.c = RestSpaceClient(base_url, space)

    def get(self, memory_id: str) -> Any:
        from .clients import ApiError

        try:
            return self.c.get(memory_id)
        except ApiError as exc:
            if exc.status == 404:
                raise NotFoundError(exc.code) from exc
            raise

    def reminisce(self) -> Any:
        return self.c.reminisce(topic="payment outage", limit=100)

    def complete(self) -> Any:
        return self.c.complete(what="debugging the payment service", min_confidence=0.0)

    def consolidate(self) -> Any:
        return self.c.consolidate(min_cluster=2, similarity=0.8)

    def beliefs(self) -> Any:
        return self.c.beliefs()

    def memory_count(self) -> int:
        return int(self.c.describe()["memory_count"])


class GrpcOps(_ClientOps):
    transport = "grpc"
    c: GrpcSpaceClient

    def __init__(self, target: str, space: str) -> None:
        from .clients import GrpcSpaceClient

        super().__init__(space)
        self.c = GrpcSpaceClient(target, space)

    def get(self, memory_id: str) -> Any:
        import grpc

        try:
            return self.c.get(memory_id)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFoundError("NOT_FOUND") from exc
            raise

    def reminisce(self) -> Any:
        return self.c.reminisce(topic="payment outage", max_results=100)

    def complete(self) -> Any:
        return self.c.complete(what="debugging the payment service", threshold=0.0)

    def consolidate(self) -> Any:
        return self.c.consolidate(min_cluster_size=2, similarity_threshold=0.8)

    def beliefs(self) -> Any:
        return self.c.consolidate(min_cluster_size=2, similarity_threshold=0.8)

    def dream(self) -> Any:
        return self.c.dream(min_cluster_size=2, similarity_threshold=0.8)

    def memory_count(self) -> int:
        return int(self.c.introspect()["space"].get("memory_count", 0))

    streams_recall = True

    def streaming_recall(self, cues: list[dict[str, Any]]) -> list[Any]:
        return self.c.streaming_recall(cues)


class ServiceOps(Ops):
    """In-process ``EngramService`` (shapes as REST JSON); ``run`` executes a coroutine."""

    transport = "inproc"

    def __init__(self, service: Any, run: Callable[[Any], Any], space: str) -> None:
        super().__init__(space)
        self.s = service
        self.run = run

    def _d(self, model: Any) -> Any:
        from ..core.models import dump

        return dump(model)

    def remember(self, m: dict[str, Any]) -> Any:
        from ..core.models import MemoryInput

        return self._d(self.run(self.s.remember(self.space, MemoryInput(**m))))

    def experience(self, e: dict[str, Any]) -> Any:
        from ..core.models import EpisodeInput

        return self._d(self.run(self.s.experience(self.space, EpisodeInput(**e))))

    def associate(self, a: str, b: str) -> Any:
        from ..core.models import AssociateInput

        return self._d(
            self.run(self.s.associate(self.space, AssociateInput(source_id=a, target_id=b, strength=0.9)))
        )

    def recall(self, **cue: Any) -> Any:
        from ..core.models import Cue

        return self._d(self.run(self.s.recall(self.space, Cue(**cue))))

    def list_all(self) -> list[dict[str, Any]]:
        return [self._d(m) for m in self.run(self.s.list_memories(self.space, limit=1000)).memories]

    def get(self, memory_id: str) -> Any:
        from ..errors import MemoryNotFound

        try:
            return self._d(self.run(self.s.get_memory(self.space, memory_id)))
        except MemoryNotFound as exc:
            raise NotFoundError(exc.code) from exc

    def recognize(self, content: str) -> Any:
        from ..core.models import RecognizeInput

        return self._d(self.run(self.s.recognize(self.space, RecognizeInput(content=content, threshold=0.5))))

    def reminisce(self) -> Any:
        from ..core.models import ReminisceQuery

        return self._d(
            self.run(self.s.reminisce(self.space, ReminisceQuery(topic="payment outage", limit=100)))
        )

    def complete(self) -> Any:
        from ..core.models import CompleteInput

        return self._d(
            self.run(
                self.s.complete(
                    self.space, CompleteInput(what="debugging the payment service", min_confidence=0.0)
                )
            )
        )

    def consolidate(self) -> Any:
        from ..core.models import ConsolidateInput

        return self._d(
            self.run(self.s.consolidate(self.space, ConsolidateInput(min_cluster=2, similarity=0.8)))
        )

    def beliefs(self) -> Any:
        return self._d(self.run(self.s.list_beliefs(self.space)))

    def memory_count(self) -> int:
        return int(self.run(self.s.introspect(self.space)).memories)


# ----------------------------------------------------------------------------- the matrix


@dataclass
class CheckResult:
    name: str
    space: str
    transport: str
    exercised: int = 0  # how many ids/tags the responses contained (a check that saw nothing proves nothing)
    violations: list[str] = field(default_factory=list)


def load(ops: Ops, data: SpaceData) -> None:
    for m in data.memories:
        ops.remember(m)
    for e in data.episodes:
        ops.experience(e)
    for a, b in data.associations:
        ops.associate(a, b)


RECALL_CUES: list[tuple[str, dict[str, Any]]] = [
    ("recall-similarity", {"embedding": shared_vec(0), "mode": "similarity", "max_results": 50}),
    ("recall-text", {"query": "orchard note", "mode": "similarity", "max_results": 50}),
    ("recall-own-vector", {"embedding": own_vec(0), "mode": "similarity", "max_results": 50}),
    (
        "recall-spreading",
        {"embedding": shared_vec(0), "mode": "spreading", "max_results": 50, "trace_activation": True},
    ),
    (
        "recall-hybrid",
        {
            "embedding": shared_vec(0),
            "query": "espresso machine",
            "mode": "hybrid",
            "max_results": 50,
            "trace_activation": True,
        },
    ),
]


def run_checks(
    ops: Ops, data: SpaceData, others: dict[str, SpaceData], only: set[str] | None = None
) -> list[CheckResult]:
    """Every read surface of one space, through one transport. Returns one result per check."""
    sp = ops.space
    results: list[CheckResult] = []

    def check(name: str, fn: Callable[[CheckResult], None]) -> None:
        if only is not None and name.split(":")[0] not in only:
            return
        r = CheckResult(name, sp, ops.transport)
        try:
            fn(r)
        except Exception as exc:  # a failed call is a failed check, reported with the rest
            r.violations.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        results.append(r)

    def scanned(r: CheckResult, resp: Any, allowed: set[str] | None = None) -> Scan:
        s = scan(resp)
        r.exercised += len(s.ids) + len(s.tags)
        r.violations += foreign(sp, s, allowed if allowed is not None else data.ids)
        return s

    for name, cue in RECALL_CUES:

        def _recall(r: CheckResult, cue: dict[str, Any] = cue, name: str = name) -> None:
            s = scanned(r, ops.recall(**cue))
            if name == "recall-spreading" and f"own.{sp}.0" not in s.ids:
                r.violations.append(f"spreading did not reach own.{sp}.0 (ids {sorted(set(s.ids))})")

        check(name, _recall)

    def _streaming_recall(r: CheckResult) -> None:
        # Every recall cue as one message of one bidirectional stream, each naming this space.
        answers = ops.streaming_recall([cue for _, cue in RECALL_CUES])
        if len(answers) != len(RECALL_CUES):
            r.violations.append(f"{len(RECALL_CUES)} recalls sent, {len(answers)} answered")
        # not strict: a short answer list is reported above, the answers that came are still checked
        for (name, _), answer in zip(RECALL_CUES, answers, strict=False):
            if "error" in answer:
                r.violations.append(f"{name}: error {answer['error']}")
            s = scanned(r, answer)
            if answer.get("memory_space_id") != sp:
                r.violations.append(f"{name}: answered for space {answer.get('memory_space_id')!r}")
            if name == "recall-spreading" and f"own.{sp}.0" not in s.ids:
                r.violations.append(f"streamed spreading did not reach own.{sp}.0 (ids {sorted(set(s.ids))})")

    if ops.streams_recall:
        check("streaming-recall", _streaming_recall)

    def _list(r: CheckResult) -> None:
        items = ops.list_all()
        scanned(r, items)
        got = sorted(m["id"] for m in items)
        if got != sorted(data.ids):
            extra = sorted(set(got) - data.ids)
            missing = sorted(data.ids - set(got))
            r.violations.append(f"list: extra {extra} missing {missing} (count {len(got)} != {data.count})")

    check("list", _list)

    def _get(r: CheckResult) -> None:
        for mid in sorted(data.ids):
            scanned(r, ops.get(mid))
        for other in others.values():
            if other.space == sp:
                continue
            mid = f"own.{other.space}.{other.index}"  # exists only in that space
            try:
                resp = ops.get(mid)
            except NotFoundError:
                r.exercised += 1
                continue
            r.violations.append(f"get of {mid} (only in {other.space}) answered {str(resp)[:120]}")

    check("get", _get)

    def _recognize(r: CheckResult) -> None:
        s = scanned(r, ops.recognize(OWN_TEXT.format(j=0)))
        if f"own.{sp}.0" not in s.ids:
            r.violations.append(f"recognize did not match own.{sp}.0 (ids {s.ids})")

    check("recognize", _recognize)

    def _reminisce(r: CheckResult) -> None:
        s = scanned(r, ops.reminisce())
        if f"ep-own.{sp}" not in s.ids:
            r.violations.append(f"reminisce did not return ep-own.{sp} (ids {s.ids})")

    check("reminisce", _reminisce)

    def _complete(r: CheckResult) -> None:
        scanned(r, ops.complete())

    check("complete", _complete)

    def _beliefs(r: CheckResult) -> None:
        ops.consolidate()
        s = scanned(r, ops.beliefs())
        if f"ep-own.{sp}" not in s.ids:
            r.violations.append(f"no belief cites ep-own.{sp} (cited {sorted(set(s.ids))})")

    check("beliefs", _beliefs)

    def _dream(r: CheckResult) -> None:
        s = scanned(r, ops.dream())
        if f"ep-own.{sp}" not in s.ids:
            r.violations.append(f"the dream of {sp} never mentions ep-own.{sp} (ids {sorted(set(s.ids))})")

    check("dream", _dream)

    def _introspect(r: CheckResult) -> None:
        n = ops.memory_count()
        r.exercised += 1
        if n != data.count:
            r.violations.append(f"introspection counts {n} memories, space holds {data.count}")

    check("introspect", _introspect)
    return results


def check_health(health: dict[str, Any], data: dict[str, SpaceData]) -> CheckResult:
    r = CheckResult("system-health", "*", "rest")
    by_id = {s.get("id"): s for s in health.get("spaces", []) if isinstance(s, dict)}
    for sp, d in data.items():
        entry = by_id.get(sp)
        if entry is None:
            r.violations.append(f"{sp} missing from /api/v1/system/health")
            continue
        r.exercised += 1
        n = entry.get("memories", entry.get("memory_count"))
        if n != d.count:
            r.violations.append(f"health says {sp} holds {n} memories, it holds {d.count}")
        if entry.get("healthy") is not True:
            r.violations.append(f"{sp} reported unhealthy: {entry}")
    return r


METRIC_RE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.eE+-]+)$")


def check_metrics(text: str, data: dict[str, SpaceData]) -> CheckResult:
    """Per-space gauges of memory counts carry each space's own count."""
    r = CheckResult("metrics", "*", "rest")
    seen: dict[str, float] = {}
    for line in text.splitlines():
        m = METRIC_RE.match(line)
        if not m or m.group("name") != "engram_memories":
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels")))
        if "memory_space" in labels:
            seen[labels["memory_space"]] = float(m.group("value"))
    for sp, d in data.items():
        if sp not in seen:
            r.violations.append(f"no engram_memories{{memory_space={sp!r}}} sample")
            continue
        r.exercised += 1
        if int(seen[sp]) != d.count:
            r.violations.append(f"engram_memories{{memory_space={sp!r}}} = {seen[sp]}, space holds {d.count}")
    return r


# ----------------------------------------------------------------------------- streams


def check_stream(
    name: str,
    transport: str,
    space: str,
    events: queue.Queue[Any],
    write: Callable[[str, str], None],
    all_spaces: list[str],
    timeout: float = 20.0,
    nonce: str = "",
) -> CheckResult:
    """With a subscriber of ``space`` attached, write a probe into every space; it must only see its own.

    ``events`` is filled by the subscriber thread with decoded events (dicts)
    or an ``Exception``. Ordering makes this sleep-free: a first probe in
    ``space`` proves the subscription is live, then every other space gets a
    probe, then ``space`` gets a final one; an event from any other space
    published to this subscriber arrives before that final probe.
    """
    r = CheckResult(name, space, transport)

    def wait_for(memory_id: str) -> None:
        while True:
            item = events.get(timeout=timeout)
            if isinstance(item, Exception):
                raise item
            s = scan(item)
            r.exercised += len(s.ids)
            r.violations += foreign(space, s, None)
            if memory_id in s.ids:
                return

    try:
        write(space, f"probe.{space}.first{nonce}")
        wait_for(f"probe.{space}.first{nonce}")
        for other in all_spaces:
            if other != space:
                write(other, f"probe.{other}.x.{space}{nonce}")
        write(space, f"probe.{space}.last{nonce}")
        wait_for(f"probe.{space}.last{nonce}")
    except queue.Empty:
        r.violations.append(f"stream of {space} did not deliver its own probe within {timeout} s")
    except Exception as exc:
        r.violations.append(f"{type(exc).__name__}: {str(exc)[:300]}")
    return r


def spawn(target: Callable[[], None]) -> threading.Thread:
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t


def check_flow(
    target: str,
    space: str,
    write: Callable[[str, str], None],
    all_spaces: list[str],
    timeout: float = 20.0,
    nonce: str = ".flow",
) -> CheckResult:
    """One gRPC MemoryFlow of ``space``: subscribe, remember and recall on the same flow.

    The subscription is the flow's first request and requests are handled in
    order, so it is live before the flow's first remember. The stream protocol
    of :func:`check_stream` then runs with the own-space probes written through
    the flow (the other spaces' probes through ``write``), and finally a recall
    on the flow must find this space's probes and nothing of another space.
    Every response (receipts, events, acks, the recall) is scanned; an error
    response is a violation.
    """
    from .clients import GrpcSpaceClient, proto_dict

    client = GrpcSpaceClient(target, space)
    flow = client.flow(timeout=timeout * 3)
    events: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        try:
            for msg in flow.responses:
                d = proto_dict(msg)
                events.put(RuntimeError(f"flow error response {d}") if "error" in d else d)
        except Exception as exc:  # cancelled at the end, or a real failure while the check waits
            events.put(exc)

    spawn(read)
    seq = iter(range(2, 1_000_000))

    def write_via_flow(sp: str, memory_id: str) -> None:
        if sp == space:
            flow.remember(next(seq), id=memory_id, content="probe", metadata={"space": space})
        else:
            write(sp, memory_id)

    try:
        flow.subscribe(1)
        r = check_stream("flow", "grpc", space, events, write_via_flow, all_spaces, timeout, nonce)
        if r.violations:
            return r
        recall_seq = next(seq)
        flow.recall(recall_seq, query="probe", max_results=100)
        try:
            while True:
                item = events.get(timeout=timeout)
                if isinstance(item, Exception):
                    raise item
                s = scan(item)
                r.exercised += len(s.ids) + len(s.tags)
                r.violations += foreign(space, s, None)
                if int(item.get("sequence", 0)) == recall_seq and "recall_result" in item:
                    if f"probe.{space}.first{nonce}" not in s.ids:
                        r.violations.append(
                            f"flow recall did not find probe.{space}.first{nonce} (ids {s.ids})"
                        )
                    break
        except queue.Empty:
            r.violations.append(f"flow recall of {space} not answered within {timeout} s")
        except Exception as exc:
            r.violations.append(f"{type(exc).__name__}: {str(exc)[:300]}")
        return r
    finally:
        flow.cancel()
        client.close()
