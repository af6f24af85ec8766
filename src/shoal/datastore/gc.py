"""Keeping the datastore small: what ``shoal gc`` removes, decided without I/O.

:func:`plan` is the whole decision: given the files under the folders shoal
itself writes (``runs/``, ``logs/``, ``bundles/``, ``.staging``) and a few
facts read from the database (:class:`StoreFacts`), it says which folders
and files go. :func:`survey` reads those files, :func:`sweep` removes what a
plan says. Files you added yourself (any other path) are never touched.

What goes:

- the outputs and logs of a run that is *gone* (its folder is in the
  datastore, its row is not in the database), or that *ended* (succeeded,
  failed, cancelled) longer than ``older_than`` seconds ago;
- a bundle no kept run uses, written longer than ``older_than`` ago (or at
  a time the backend does not know);
- what an attempt staged that no longer runs (its outputs never become
  visible: it lost, failed, or was promoted already).

What stays, whatever its age: everything of a run still running (its
outputs, logs and bundle), and the outputs of a finished task that a task
not yet finished reads (a dependent waiting in a live run) or that a kept
run shows as its own (a task reused, ``cached``, from an older run keeps its
outputs in that run's folder).

The store is read *after* the datastore is listed: a run, attempt or bundle
made in between is then known to the database, so nothing new is taken for
a leftover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shoal.datastore.base import Datastore, FileInfo
from shoal.datastore.layout import BUNDLES, LOGS, OUTPUTS, RECORDS, STAGING

__all__ = [
    "KINDS",
    "SHOAL_FOLDERS",
    "Plan",
    "Removal",
    "RunFacts",
    "StoreFacts",
    "collect",
    "plan",
    "shoal_folder",
    "survey",
    "sweep",
]

# The kinds of files gc frees, in the order it reports them.
KINDS = ("outputs", "logs", "bundles", "staged")
_BUNDLE_SUFFIX = ".tar.gz"
# The folders shoal writes itself. What is in them is the runs' (a dependent
# reads an output, a retry a bundle): gc removes it when nothing needs it, and
# 'shoal data add' and 'rm' leave it alone.
# The integrity records (RECORDS) follow their files; no one removes them by hand.
SHOAL_FOLDERS = (OUTPUTS, LOGS, BUNDLES, STAGING + "/", RECORDS + "/")


def shoal_folder(path: str) -> str | None:
    """The folder of shoal's own that ``path`` is (or is in), if any."""
    for folder in SHOAL_FOLDERS:
        if path == folder.rstrip("/") or path.startswith(folder):
            return folder
    return None


@dataclass(frozen=True)
class RunFacts:
    """What gc needs to know of one run in the database."""

    id: int
    state: str
    # Seconds since the epoch when it ended; None while it runs.
    finished: float | None
    bundle: str | None = None


@dataclass(frozen=True)
class StoreFacts:
    """The database's side of the decision (see :func:`shoal.store.gc.gc_facts`)."""

    runs: dict[int, RunFacts]
    # (run whose folder holds the outputs, task): outputs a task not yet finished reads.
    needed: frozenset[tuple[int, str]] = frozenset()
    # (run whose folder holds the outputs, task, run that shows them as its task's).
    borrowed: frozenset[tuple[int, str, int]] = frozenset()
    # The attempts running now.
    running_attempts: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Removal:
    """One folder or file gc removes: its kind, its datastore path, its files and their bytes."""

    kind: str
    path: str
    files: int
    bytes: int

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": self.path, "files": self.files, "bytes": self.bytes}


@dataclass
class Plan:
    """What gc removes; ``kept``: per kind, folders it would take but keeps because they are read."""

    removals: list[Removal] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)
    # The outputs removed of runs the database has: (run, task), or (run, None) for all of
    # them. Recorded there, so that no later run reuses those tasks (see :func:`collect`).
    forgotten: list[tuple[int, str | None]] = field(default_factory=list, compare=False)

    def totals(self) -> dict[str, dict[str, int]]:
        """Per kind, the files and bytes freed (every kind, zero where nothing goes)."""
        out = {kind: {"files": 0, "bytes": 0} for kind in KINDS}
        for r in self.removals:
            out[r.kind]["files"] += r.files
            out[r.kind]["bytes"] += r.bytes
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "removals": [r.to_dict() for r in self.removals],
            "totals": self.totals(),
            "kept": dict(self.kept),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Plan:
        """A plan as :meth:`to_dict` wrote it (the boss's answer to ``POST /v1/gc``)."""
        removals = data.get("removals")
        kept = data.get("kept")
        return cls(
            removals=[
                Removal(str(r["kind"]), str(r["path"]), int(r["files"]), int(r["bytes"]))
                for r in (removals if isinstance(removals, list) else [])
            ],
            kept={str(k): int(v) for k, v in (kept if isinstance(kept, dict) else {}).items()},
        )


def plan(files: Iterable[FileInfo], facts: StoreFacts, now: float, older_than: float) -> Plan:
    """What to remove of ``files`` (under shoal's own folders), given the database's ``facts``.

    ``older_than``: seconds a run must have ended (and an unused bundle have
    been written) before its files go. See the module's docstring for the rules.
    """
    limit = now - older_than
    collected = _Collected(facts, limit)
    kept_outputs = set(facts.needed) | {
        (holder, task) for holder, task, by in facts.borrowed if not collected(by)
    }
    used_bundles = {
        r.bundle for r in facts.runs.values() if r.bundle is not None and not collected(r.id)
    }
    groups: dict[tuple[str, str], list[FileInfo]] = {}
    # Run folders (runs/<run>) holding something that stays: removed task by task.
    partial: set[str] = set()
    kept: set[str] = set()  # task folders of collected runs that something still reads
    for info in files:
        found = _group(info.path)
        if found is None:
            parts = info.path.split("/")
            if info.path.startswith(OUTPUTS) and len(parts) > 2:
                partial.add("/".join(parts[:2]))  # not laid out by shoal: not gc's to judge
            continue
        kind, key = found
        if kind in ("outputs", "logs"):
            run = int(key.split("/")[1])
            if not collected(run):
                continue
            if kind == "outputs" and (run, key.split("/")[2]) in kept_outputs:
                kept.add(key)
                partial.add(key.rsplit("/", 1)[0])
                continue
        elif kind == "bundles":
            digest = key[len(BUNDLES) : -len(_BUNDLE_SUFFIX)]
            if digest in used_bundles or (info.modified is not None and info.modified > limit):
                continue
        elif int(key.split("/")[1]) in facts.running_attempts:
            continue  # staged by an attempt that runs: it may still win its task
        groups.setdefault((kind, key), []).append(info)
    merged: dict[tuple[str, str], list[FileInfo]] = {}
    for (kind, key), infos in groups.items():
        if kind == "outputs" and key.rsplit("/", 1)[0] not in partial:
            key = key.rsplit("/", 1)[0]  # nothing of the run stays: its whole folder goes
        merged.setdefault((kind, key), []).extend(infos)
    result = Plan(kept={"outputs": len(kept)} if kept else {})
    for (kind, key), infos in sorted(merged.items(), key=lambda g: (KINDS.index(g[0][0]), g[0][1])):
        result.removals.append(Removal(kind, key, len(infos), sum(i.size for i in infos)))
        parts = key.split("/")
        if kind == "outputs" and int(parts[1]) in facts.runs:
            result.forgotten.append((int(parts[1]), parts[2] if len(parts) > 2 else None))
    return result


class _Collected:
    """Whether a run's files may go: it is gone from the database, or ended before ``limit``."""

    def __init__(self, facts: StoreFacts, limit: float) -> None:
        self.runs = facts.runs
        self.limit = limit

    def __call__(self, run_id: int) -> bool:
        run = self.runs.get(run_id)
        if run is None:
            return True
        return run.state != "running" and run.finished is not None and run.finished <= self.limit


def _group(path: str) -> tuple[str, str] | None:
    """The kind of a file gc may remove and the folder (or file) removed with it; None if none.

    Outputs go per task folder (``runs/<run>/<task>``; a run's whole folder
    when all of it goes), logs per run (``logs/<run>``), bundles per file,
    staged outputs per attempt.
    """
    parts = path.split("/")
    if path.startswith(OUTPUTS) and len(parts) >= 4 and parts[1].isdigit():
        return "outputs", "/".join(parts[:3])
    if path.startswith(LOGS) and len(parts) >= 3 and parts[1].isdigit():
        return "logs", "/".join(parts[:2])
    if path.startswith(BUNDLES) and len(parts) == 2 and path.endswith(_BUNDLE_SUFFIX):
        return "bundles", path
    if parts[0] == STAGING and len(parts) >= 3 and parts[1].isdigit():
        return "staged", "/".join(parts[:2])
    return None


def survey(datastore: Datastore) -> list[FileInfo]:
    """Every file under the folders gc looks at, with its size and (where known) time."""
    found: list[FileInfo] = []
    for prefix in (OUTPUTS, LOGS, BUNDLES):
        found.extend(datastore.entries(prefix))
    # Staged outputs are never listed: asked for by name.
    found.extend(datastore.info(path) for path in datastore.files(STAGING))
    return found


def sweep(datastore: Datastore, result: Plan) -> None:
    """Remove what ``result`` says, folder by folder."""
    for removal in result.removals:
        datastore.remove(removal.path)


def collect(
    datastore: Datastore,
    facts: Callable[[], StoreFacts],
    forget: Callable[[list[tuple[int, str | None]]], None],
    now: float,
    older_than: float,
    *,
    dry_run: bool = False,
) -> Plan:
    """List the datastore, then ask the database (in that order: see above), plan, and sweep.

    ``forget`` records in the database which tasks' outputs go, before they
    go: a run submitted later reuses none of them, and runs them again.
    """
    files = survey(datastore)
    result = plan(files, facts(), now, older_than)
    if not dry_run:
        forget(result.forgotten)
        sweep(datastore, result)
    return result
