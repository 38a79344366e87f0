"""Generate the "legacy installs" of a fictional task-tracker app (:mod:`statestore.examples.tracker`).

The importer tests read two folders that an old version of the tracker app
would have left on disk, and ``statestore demo`` generates them into its
demo folder (so the demo needs no source tree)::

    python tools/make_legacy_tracker.py                # rewrites fixtures/legacy/tracker*
    python tools/make_legacy_tracker.py --root /tmp/x  # writes the same trees elsewhere

* ``tracker/``: a healthy install (20 epics, 300 tasks, 200 task states,
  150 approvals, 1500 events) with stray files an importer must skip.
* ``tracker-damaged/``: a small install with exactly one broken record of each
  kind the importer must report, listed in ``tracker-damaged/EXPECTED.json``.
* ``quirks/``: the shapes real tools leave, under two XDG-style roots
  (``config/app`` and ``state/app``): a server registry with a port clash,
  a map of strings with a repeated member, Go-style status files without a
  trailing newline, Go timestamps with nanoseconds and offsets, a JSON Lines
  collection and log, and stray ``.lock``/``.tmp``/``.corrupted`` files;
  its rejects listed in ``quirks/EXPECTED.json``. (A link out of the root is
  made by the tests at run time.)

Everything comes from a fixed ``random.Random(seed)`` and a fixed base time, so
two runs give byte-identical trees. Both folders are deleted and recreated;
``fixtures/legacy/README.md`` is hand-written and left alone. The file shapes
are described there.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

HEALTHY_DIR = "tracker"
DAMAGED_DIR = "tracker-damaged"
QUIRKS_DIR = "quirks"

HEALTHY_SEED = 20250106
DAMAGED_SEED = 20250107
BASE_TIME = datetime(2025, 1, 6, 9, 0, 0, tzinfo=timezone.utc)

PEOPLE = ["ana", "bo", "chen", "dmitri", "eve", "farah", "gus", "hiro", "ines", "jon"]
TAGS = ["backend", "frontend", "ui", "api", "db", "infra", "docs", "perf", "security", "i18n", "bug", "tech-debt"]
POINTS = [1, 2, 3, 5, 8, 13]
EPIC_THEMES = [
    "Onboarding",
    "Billing",
    "Search",
    "Notifications",
    "Reporting",
    "Mobile app",
    "Permissions",
    "Data export",
    "Sync engine",
    "Audit log",
    "Dark mode",
    "Calendar view",
    "Integrations",
    "Offline mode",
    "Performance",
    "Accessibility",
    "Internationalisation",
    "Attachments",
    "Public API",
    "Admin console",
]
EPIC_SUFFIXES = ["revamp", "v2", "phase 1", "cleanup", "MVP", "hardening"]
VERBS = ["Add", "Fix", "Refactor", "Remove", "Document", "Speed up", "Test", "Migrate", "Validate", "Cache"]
OBJECTS = [
    "CSV export",
    "login redirect",
    "retry loop",
    "date picker",
    "webhook handler",
    "settings page",
    "empty state",
    "pagination",
    "search index",
    "rate limiter",
    "email template",
    "error banner",
    "file upload",
    "permission check",
    "timezone handling",
    "sidebar layout",
    "audit entries",
    "invoice totals",
]
NON_ASCII_TITLES = [
    "Réviser la page d'accueil",
    "日本語ロケールの日付表示を修正",
    "Fix 🐛 in sync retry",
    "Café menu: accent handling",
    "Übersetzung für Einstellungen",
    "Emoji 🎉 in notification titles",
]
COMMENTS = [
    "lgtm",
    "needs a test",
    "see the thread in #tracker",
    "blocked on design review",
    "can we split this?",
    "done on staging",
    "reopened after QA",
    "moving to next sprint",
    "pairing on this tomorrow",
    "perf looks fine now",
]
BLOCK_REASONS = [
    "waiting for API keys",
    "design not final",
    "depends on upstream fix",
    "needs security review",
    "flaky CI",
]
APPROVE_NOTES = ["looks good", "ship it", "approved after demo", "fine for now", ""]
REJECT_NOTES = ["missing tests", "breaks mobile layout", "needs docs", "please split the change"]

STATUS_PATHS: dict[str, list[list[str]]] = {
    "todo": [[]],
    "doing": [["doing"], ["doing"], ["doing", "blocked", "doing"]],
    "done": [["doing", "done"], ["doing", "done"], ["doing", "done"], ["doing", "blocked", "doing", "done"]],
    "blocked": [["doing", "blocked"]],
}
STATUS_WEIGHTS = {"todo": 30, "doing": 25, "done": 35, "blocked": 10}


@dataclass
class Event:
    """One line of ``events.jsonl``; ``seq`` breaks ties between equal timestamps."""

    ts: datetime
    stream_id: str
    type: str
    actor: str
    data: dict[str, Any]
    seq: int = 0


@dataclass
class Task:
    """A task with its final state and the history that led to it."""

    id: str
    epic: int
    title: str
    status: str
    tags: list[str]
    points: int
    created: datetime
    assignee: str | None
    started_at: datetime | None = None
    attempts: int = 0
    blocked_reason: str | None = None
    history: list[Event] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The content of ``tasks/<id>.json`` (the id is only in the file name)."""
        return {
            "title": self.title,
            "epic": f"E-{self.epic}",
            "status": self.status,
            "tags": self.tags,
            "points": self.points,
        }

    def state(self) -> dict[str, Any]:
        """The content of ``state/<id>.state.json``."""
        return {
            "assignee": self.assignee,
            "started_at": iso(self.started_at) if self.started_at else None,
            "attempts": self.attempts,
            "blocked_reason": self.blocked_reason,
        }


@dataclass
class Spec:
    """Sizes and knobs of one generated install."""

    seed: int
    task_counts: list[int]
    n_states: int
    n_approvals: int
    n_events: int
    n_non_ascii: int
    n_locks: int
    forced_states: tuple[str, ...] = ()
    forced_indented: tuple[str, ...] = ()


@dataclass
class Install:
    """Everything one install holds, before it is written out."""

    epics: dict[str, dict[str, Any]]
    tasks: list[Task]
    compact: set[str]
    states: list[Task]
    approvals: list[dict[str, Any]]
    events: list[Event]
    locks: list[str]


def iso(ts: datetime, *, zulu: bool = True) -> str:
    """Format a UTC time as ISO-8601 with a ``Z`` or ``+00:00`` suffix, whole seconds."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if zulu else "+00:00")


def dumps(obj: Any, *, compact: bool = False) -> str:
    """Serialise like the old app did: UTF-8 text, compact or 2-space indented, trailing newline."""
    if compact:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"


def event_line(event: Event, *, zulu: bool) -> str:
    """One ``events.jsonl`` line (without the newline)."""
    return json.dumps(event_dict(event, zulu=zulu), ensure_ascii=False)


def event_dict(event: Event, *, zulu: bool) -> dict[str, Any]:
    """The JSON object of an event, keys in the order the old app wrote them."""
    return {
        "ts": iso(event.ts, zulu=zulu),
        "stream_id": event.stream_id,
        "type": event.type,
        "actor": event.actor,
        "data": event.data,
    }


def minutes(rng: random.Random, low: int, high: int) -> timedelta:
    """A random whole-minute delay in ``[low, high]``."""
    return timedelta(minutes=rng.randint(low, high))


def build_task(rng: random.Random, task_id: str, epic: int, epic_created: datetime, owner: str) -> Task:
    """Make a task with a consistent status history, assignment and runtime state."""
    status = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()))[0]
    created = epic_created + minutes(rng, 30, 60 * 24 * 10)
    assignee = None if status == "todo" and rng.random() < 0.5 else rng.choice(PEOPLE)
    task = Task(
        id=task_id,
        epic=epic,
        title=f"{rng.choice(VERBS)} {rng.choice(OBJECTS)}",
        status=status,
        tags=sorted(rng.sample(TAGS, rng.randint(0, 3))),
        points=rng.choice(POINTS),
        created=created,
        assignee=assignee,
    )
    stream = f"task:{task_id}"
    when = created
    if assignee is not None:
        if rng.random() < 0.15:
            when += minutes(rng, 10, 60 * 24)
            other = rng.choice([p for p in PEOPLE if p != assignee])
            task.history.append(Event(when, stream, "assigned", owner, {"to": other}))
        when += minutes(rng, 10, 60 * 24 * 2)
        task.history.append(Event(when, stream, "assigned", owner, {"to": assignee}))
    previous = "todo"
    for new in rng.choice(STATUS_PATHS[status]):
        when += minutes(rng, 20, 60 * 24 * 3)
        data: dict[str, Any] = {"from": previous, "to": new}
        if new == "doing":
            task.attempts += 1
            task.started_at = task.started_at or when
        if new == "blocked":
            data["reason"] = rng.choice(BLOCK_REASONS)
            task.blocked_reason = data["reason"]
        else:
            task.blocked_reason = None
        task.history.append(Event(when, stream, "status", assignee or owner, data))
        previous = new
    return task


def build_install(spec: Spec) -> Install:
    """Generate the content of one install from its spec (deterministic for a given spec)."""
    rng = random.Random(spec.seed)
    epics: dict[str, dict[str, Any]] = {}
    tasks: list[Task] = []
    created_events: list[Event] = []
    themes = rng.sample(EPIC_THEMES, len(spec.task_counts))
    for number, (theme, count) in enumerate(zip(themes, spec.task_counts), start=1):
        epic_created = BASE_TIME + timedelta(days=2 * (number - 1)) + minutes(rng, 0, 60 * 8)
        owner = rng.choice(PEOPLE)
        title = f"{theme} {rng.choice(EPIC_SUFFIXES)}"
        epics[f"E-{number}"] = {"title": title, "owner": owner, "created": iso(epic_created)}
        created_events.append(Event(epic_created, f"epic:E-{number}", "created", owner, {"title": title}))
        for n in range(1, count + 1):
            task = build_task(rng, f"fn-{number}.{n}", number, epic_created, owner)
            tasks.append(task)
            created_events.append(
                Event(task.created, f"task:{task.id}", "created", owner, {"title": task.title, "epic": f"E-{number}"})
            )

    for task, title in zip(rng.sample(tasks, spec.n_non_ascii), NON_ASCII_TITLES):
        task.title = title
        next(e for e in created_events if e.stream_id == f"task:{task.id}").data["title"] = title

    candidates = [t.id for t in tasks if t.id not in spec.forced_indented]
    compact = set(rng.sample(candidates, len(tasks) // 2))

    state_ids = set(spec.forced_states)
    state_ids.update(rng.sample([t.id for t in tasks if t.id not in state_ids], spec.n_states - len(state_ids)))
    states = [t for t in tasks if t.id in state_ids]

    approvals = build_approvals(rng, tasks, spec.n_approvals)
    events = build_events(rng, epics, tasks, created_events, spec.n_events)
    lockable = [t.id for t in tasks if t.id not in spec.forced_indented]
    locks = sorted(rng.sample(lockable, spec.n_locks), key=lambda i: [int(p) for p in i[3:].split(".")])
    return Install(epics, tasks, compact, states, approvals, events, locks)


def build_approvals(rng: random.Random, tasks: list[Task], count: int) -> list[dict[str, Any]]:
    """Approvals of started tasks, in time order; there is deliberately no id field."""
    pool = [t for t in tasks if t.started_at is not None]
    rows: list[tuple[datetime, int, dict[str, Any]]] = []
    for index in range(count):
        task = rng.choice(pool)
        assert task.started_at is not None
        at = task.started_at + minutes(rng, 60, 60 * 24 * 10)
        approved = rng.random() < (0.85 if task.status == "done" else 0.5)
        row = {
            "task": task.id,
            "by": rng.choice([p for p in PEOPLE if p != task.assignee]),
            "at": iso(at),
            "verdict": "approved" if approved else "rejected",
            "note": rng.choice(APPROVE_NOTES if approved else REJECT_NOTES),
        }
        rows.append((at, index, row))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [row for _, _, row in rows]


def build_events(
    rng: random.Random,
    epics: dict[str, dict[str, Any]],
    tasks: list[Task],
    created_events: list[Event],
    count: int,
) -> list[Event]:
    """Exactly ``count`` events in time order.

    Every stream gets its ``created`` event; whole task histories are added (in
    random task order) while they fit, and comments fill the rest.
    """
    events = list(created_events)
    if len(events) > count:
        raise ValueError(f"{count} events cannot hold {len(events)} created events")
    for task in rng.sample(tasks, len(tasks)):
        if len(events) + len(task.history) <= count:
            events.extend(task.history)
    streams = [(f"epic:{eid}", datetime.fromisoformat(e["created"].replace("Z", "+00:00"))) for eid, e in epics.items()]
    streams += [(f"task:{t.id}", t.created) for t in tasks]
    while len(events) < count:
        stream, start = rng.choice(streams)
        when = start + minutes(rng, 5, 60 * 24 * 20)
        events.append(Event(when, stream, "comment", rng.choice(PEOPLE), {"text": rng.choice(COMMENTS)}))
    for seq, event in enumerate(events):
        event.seq = seq
    events.sort(key=lambda e: (e.ts, e.seq))
    return events


def write(path: Path, data: str | bytes) -> None:
    """Write text as UTF-8 (or raw bytes) exactly, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_install(root: Path, install: Install, rng: random.Random) -> None:
    """Write an install's files (healthy content plus stray files) under ``root``."""
    write(root / "epics.json", dumps({"version": 1, "epics": install.epics}))
    for task in install.tasks:
        write(root / "tasks" / f"{task.id}.json", dumps(task.body(), compact=task.id in install.compact))
    for task_id in install.locks:
        write(root / "tasks" / f"{task_id}.json.lock", b"")
    half_written = dumps({"title": "Scratch task", "epic": "E-9", "status": "todo", "tags": [], "points": 3})
    write(root / "tasks" / ".fn-9.9.json.tmp", half_written[: len(half_written) // 2])
    write(
        root / "tasks" / "README.txt",
        "One JSON file per task, named <task-id>.json.\nWritten by tracker 0.9; do not edit by hand.\n",
    )
    for task in install.states:
        write(root / "state" / f"{task.id}.state.json", dumps(task.state()))
    write(root / "approvals.json", dumps(install.approvals))
    lines = [event_line(e, zulu=rng.random() < 0.75) + "\n" for e in install.events]
    write(root / "events.jsonl", "".join(lines))


def line_of(text: str, needle: str) -> int:
    """1-based line number of the first occurrence of ``needle`` in ``text``."""
    return text.count("\n", 0, text.index(needle)) + 1


def expected(path: str, line: int | None, pointer: str | None, kind: str, note: str) -> dict[str, Any]:
    """One entry of ``EXPECTED.json``."""
    return {"path": path, "line": line, "pointer": pointer, "kind": kind, "note": note}


def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that fails on a repeated key (used to check the planted duplicate)."""
    keys = [k for k, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise ValueError(f"duplicate key {key!r}")
    return dict(pairs)


def decode_error_line(data: bytes) -> int:
    """The line ``json`` reports for a document that must not parse."""
    try:
        json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as exc:
        return exc.lineno
    raise AssertionError("document parsed but should not")


def utf8_error_line(data: bytes) -> int:
    """The line holding the first byte that is not valid UTF-8."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return data.count(b"\n", 0, exc.start) + 1
    raise AssertionError("document decoded but should not")


def damage_tasks(root: Path, install: Install) -> list[dict[str, Any]]:
    """Plant the five broken task files (all written indented) and describe them."""
    tasks = {t.id: t for t in install.tasks}
    found: list[dict[str, Any]] = []

    text = dumps(tasks["fn-1.3"].body())
    lines = text.split("\n")
    lines[2] = lines[2].replace('": ', '" ', 1)
    bad = "\n".join(lines).encode("utf-8")
    write(root / "tasks" / "fn-1.3.json", bad)
    assert decode_error_line(bad) == 3
    found.append(expected("tasks/fn-1.3.json", 3, None, "invalid-json", "missing ':' after \"epic\" on line 3"))

    text = dumps(tasks["fn-1.4"].body())
    raw = text.encode("utf-8")
    cut = raw.index(b'",\n', raw.index(b'"title": "'))
    raw = raw[:cut] + b"\xff" + raw[cut:]
    write(root / "tasks" / "fn-1.4.json", raw)
    assert utf8_error_line(raw) == 2
    found.append(expected("tasks/fn-1.4.json", 2, None, "invalid-utf8", "raw 0xff byte inside the title string"))

    text = dumps(tasks["fn-2.1"].body())
    cut = text.index('"status": "') + len('"status": "') + 2
    truncated = text[:cut]
    write(root / "tasks" / "fn-2.1.json", truncated)
    line = truncated.count("\n") + 1
    assert decode_error_line(truncated.encode("utf-8")) == line
    found.append(
        expected("tasks/fn-2.1.json", line, None, "truncated", "file ends inside the status string, no closing brace")
    )

    body = tasks["fn-2.2"].body()
    body["points"] = "many"
    text = dumps(body)
    write(root / "tasks" / "fn-2.2.json", text)
    found.append(
        expected("tasks/fn-2.2.json", line_of(text, '"points"'), "/points", "wrong-type", "points is a string, not int")
    )

    body = tasks["fn-2.3"].body()
    del body["title"]
    write(root / "tasks" / "fn-2.3.json", dumps(body))
    found.append(expected("tasks/fn-2.3.json", None, "/title", "missing-field", "required member title is absent"))
    return found


def damage_epics(root: Path, install: Install) -> dict[str, Any]:
    """Rewrite ``epics.json`` by hand with ``E-2`` appearing twice in the ``epics`` map."""
    entries = list(install.epics.items())
    original = install.epics["E-2"]
    duplicate = dict(original, title=f"{original['title']} (merged copy)", owner="gus")
    entries.insert(4, ("E-2", duplicate))
    members = []
    for key, value in entries:
        inner = json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n    ")
        members.append(f"    {json.dumps(key)}: {inner}")
    text = '{\n  "version": 1,\n  "epics": {\n' + ",\n".join(members) + "\n  }\n}\n"
    write(root / "epics.json", text)
    first = text.index('"E-2": {')
    line = text.count("\n", 0, text.index('"E-2": {', first + 1)) + 1
    try:
        json.loads(text, object_pairs_hook=reject_duplicates)
    except ValueError:
        pass
    else:
        raise AssertionError("epics.json must hold a duplicate key")
    note = f'second "E-2" member (title {duplicate["title"]!r}); json.loads silently keeps this later one'
    return expected("epics.json", line, "/epics/E-2", "duplicate-key", note)


def damage_approvals(root: Path, install: Install) -> dict[str, Any]:
    """Replace element 3 of ``approvals.json`` with a string."""
    rows: list[Any] = list(install.approvals)
    note = "approved by chen on chat, see thread"
    rows[3] = note
    text = dumps(rows)
    write(root / "approvals.json", text)
    return expected("approvals.json", line_of(text, json.dumps(note)), "/3", "wrong-type", "element is a string")


def damage_events(root: Path, install: Install, rng: random.Random) -> list[dict[str, Any]]:
    """Rewrite ``events.jsonl`` with a non-JSON line 7, no stream_id on line 12, a cut-off last line."""
    lines = [event_line(e, zulu=rng.random() < 0.75) for e in install.events]
    lines[6] = str(event_dict(install.events[6], zulu=True))
    missing = event_dict(install.events[11], zulu=True)
    del missing["stream_id"]
    lines[11] = json.dumps(missing, ensure_ascii=False)
    last = lines[-1]
    lines[-1] = last[: last.index('"data"') + 9]
    write(root / "events.jsonl", "\n".join(lines))
    count = len(lines)
    return [
        expected("events.jsonl", 7, None, "invalid-json-line", "Python repr with single quotes instead of JSON"),
        expected("events.jsonl", 12, "/stream_id", "missing-field-line", "event has no stream_id"),
        expected("events.jsonl", count, None, "truncated-line", "last line cut off, no closing brace or newline"),
    ]


def damage_state(root: Path, install: Install) -> dict[str, Any]:
    """Replace ``state/fn-1.1.state.json`` with a JSON array of the same values."""
    task = next(t for t in install.tasks if t.id == "fn-1.1")
    write(root / "state" / "fn-1.1.state.json", json.dumps(list(task.state().values())) + "\n")
    return expected("state/fn-1.1.state.json", 1, "", "not-an-object", "document is an array, not an object")


HEALTHY = Spec(
    seed=HEALTHY_SEED,
    task_counts=[],  # filled in by healthy_counts() in generate()
    n_states=200,
    n_approvals=150,
    n_events=1500,
    n_non_ascii=6,
    n_locks=3,
)
DAMAGED = Spec(
    seed=DAMAGED_SEED,
    task_counts=[5, 4, 4, 4, 3],
    n_states=10,
    n_approvals=8,
    n_events=40,
    n_non_ascii=2,
    n_locks=1,
    forced_states=("fn-1.1",),
    forced_indented=("fn-1.3", "fn-1.4", "fn-2.1", "fn-2.2", "fn-2.3"),
)


def healthy_counts(seed: int, epics: int = 20, total: int = 300) -> list[int]:
    """Tasks per epic: between 8 and 22, epic 1 has at least 12 (so ``fn-1.1`` prefixes ``fn-1.10``)."""
    rng = random.Random(seed)
    counts = [rng.randint(8, 22) for _ in range(epics)]
    counts[0] = max(counts[0], 12)
    while sum(counts) != total:
        index = rng.randrange(epics)
        step = 1 if sum(counts) < total else -1
        if 8 <= counts[index] + step <= 22 and (index or counts[index] + step >= 12):
            counts[index] += step
    return counts


def write_quirks(target: Path) -> None:
    """The quirks install (see the module docstring) and its EXPECTED.json."""
    config, state = target / "config" / "app", target / "state" / "app"
    found: list[dict[str, Any]] = []
    # A server registry as a JavaScript tool writes it: 2-space indent, no trailing newline.
    servers = {
        "api": {"port": 8080, "host": "127.0.0.1"},
        "web": {"port": 3000, "host": "127.0.0.1"},
        "docs": {"port": 4000, "host": "docs.internal"},
        "admin": {"port": 8080, "host": "127.0.0.1"},
        "metrics": {"port": 9090, "host": "127.0.0.1"},
    }
    text = json.dumps(servers, indent=2)
    write(config / "servers.json", text)
    for name in ("api", "admin"):
        found.append(expected("servers.json", line_of(text, f'"{name}"'), f"/{name}", "unique-clash", "port 8080"))
    # A map of strings with a member written twice (a hand edit): json.loads keeps the last one.
    aliases = (
        '{\n  "home": "http://localhost:3000",\n  "api": "http://localhost:8080",\n  "home": "http://127.0.0.1:3000"\n}'
    )
    write(config / "aliases.json", aliases)
    found.append(expected("aliases.json", 4, None, "duplicate-member", '"home" twice, in a map of strings'))
    # Go status files: RFC 3339 with offsets, compact, no trailing newline; stray files beside them.
    phases = ["Running", "Pending", "Succeeded", "Running", "Failed"]
    for i, phase in enumerate(phases):
        offset = "+02:00" if i % 2 else "-07:00"
        doc = {"phase": phase, "restarts": i, "updated": f"2025-01-06T0{i}:00:00.{i:06d}{offset}"}
        write(state / "status" / f"workload-{i}.json", json.dumps(doc, separators=(",", ":")))
    write(state / "status" / "workload-0.json.lock", "")
    write(state / "status" / ".workload-1.json.tmp", '{"phase": "Runn')
    write(state / "status" / "workload-2.json.corrupted", "\x00\x00garbage")
    # A memory index: one record per line, into a collection; the last line cut off by a crash.
    lines = [
        json.dumps({"id": f"m{i}", "text": f"remember {i}", "at": f"2025-01-06T09:{i:02d}:00.123456+00:00"})
        for i in range(1, 6)
    ]
    write(state / "memory.jsonl", "\n".join(lines) + '\n{"id": "m6", "text": "remem')
    found.append(expected("memory.jsonl", 6, None, "truncated-line", "last line cut off"))
    # Go events: nanoseconds and offsets in "time".
    events = [
        json.dumps(
            {"time": f"2025-01-06T1{i}:00:00.{i + 1:09d}+05:30", "workload": f"workload-{i}", "msg": "restarted"}
        )
        for i in range(5)
    ]
    write(state / "events.jsonl", "\n".join(events) + "\n")
    write(target / "EXPECTED.json", dumps(found))


def generate(root: Path) -> None:
    """Delete and recreate every install under ``root``."""
    for name in (HEALTHY_DIR, DAMAGED_DIR, QUIRKS_DIR):
        shutil.rmtree(root / name, ignore_errors=True)
    write_quirks(root / QUIRKS_DIR)

    spec = replace(HEALTHY, task_counts=healthy_counts(HEALTHY_SEED))
    install = build_install(spec)
    write_install(root / HEALTHY_DIR, install, random.Random(spec.seed + 1))

    damaged = build_install(DAMAGED)
    target = root / DAMAGED_DIR
    rng = random.Random(DAMAGED.seed + 1)
    write_install(target, damaged, rng)
    found = damage_tasks(target, damaged)
    found.append(damage_epics(target, damaged))
    found.append(damage_approvals(target, damaged))
    found.extend(damage_events(target, damaged, rng))
    found.append(damage_state(target, damaged))
    write(target / "EXPECTED.json", dumps(found))


def main(default_root: Path, argv: list[str] | None = None) -> None:
    """Command-line entry point (``tools/make_legacy_tracker.py``): write both installs under ``--root``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=default_root, help="folder that receives tracker/, tracker-damaged/ and quirks/"
    )
    args = parser.parse_args(argv)
    generate(args.root)
