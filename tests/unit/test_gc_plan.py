"""What ``shoal gc`` removes, decided on plain facts (no database, no files)."""

from __future__ import annotations

from shoal.datastore.base import FileInfo
from shoal.datastore.gc import Plan, RunFacts, StoreFacts, plan

NOW = 1_800_000_000.0
DAY = 86400.0


def f(path: str, size: int = 10, modified: float | None = None) -> FileInfo:
    return FileInfo(path, size, modified)


def removed(result: Plan) -> set[tuple[str, str]]:
    return {(r.kind, r.path) for r in result.removals}


def ended(run_id: int, days_ago: float, bundle: str | None = None) -> RunFacts:
    return RunFacts(run_id, "succeeded", NOW - days_ago * DAY, bundle)


def test_a_gone_run_and_one_ended_long_ago_go_whole_recent_and_running_ones_stay() -> None:
    files = [f(f"runs/{r}/t/out.txt") for r in (1, 2, 3, 4)]
    files += [f(f"logs/{r}/t/{r}.log", 5) for r in (1, 2, 3, 4)]
    facts = StoreFacts(
        runs={
            2: ended(2, 40),
            3: ended(3, 1),
            4: RunFacts(4, "running", None),
        }
    )
    result = plan(files, facts, NOW, 30 * DAY)
    assert removed(result) == {
        ("outputs", "runs/1"),
        ("outputs", "runs/2"),
        ("logs", "logs/1"),
        ("logs", "logs/2"),
    }
    assert result.totals()["outputs"] == {"files": 2, "bytes": 20}
    assert result.totals()["logs"] == {"files": 2, "bytes": 10}


def test_a_run_running_for_ages_keeps_everything() -> None:
    files = [f("runs/4/t/out.txt"), f("logs/4/t/9.log"), f("bundles/abc.tar.gz", modified=0.0)]
    facts = StoreFacts(runs={4: RunFacts(4, "running", None, "abc")})
    assert plan(files, facts, NOW, 0).removals == []


def test_outputs_a_waiting_task_reads_stay_and_the_rest_of_their_run_goes() -> None:
    files = [f("runs/1/prep/data.csv"), f("runs/1/other/x.txt"), f("logs/1/prep/3.log")]
    facts = StoreFacts(runs={1: ended(1, 90)}, needed=frozenset({(1, "prep")}))
    result = plan(files, facts, NOW, 30 * DAY)
    assert removed(result) == {("outputs", "runs/1/other"), ("logs", "logs/1")}
    assert result.kept == {"outputs": 1}
    # What the database is told, so that no later run reuses a task whose outputs went.
    assert result.forgotten == [(1, "other")]


def test_the_database_hears_of_whole_runs_removed_but_not_of_runs_it_has_not() -> None:
    files = [f("runs/1/a/x"), f("runs/1/b/y"), f("runs/2/a/x")]
    result = plan(files, StoreFacts(runs={1: ended(1, 90)}), NOW, 30 * DAY)
    assert removed(result) == {("outputs", "runs/1"), ("outputs", "runs/2")}
    assert result.forgotten == [(1, None)]


def test_outputs_a_kept_run_reuses_stay_until_that_run_goes_too() -> None:
    files = [f("runs/1/prep/data.csv")]
    # Run 2 reused (cached) prep from run 1: its outputs are in run 1's folder.
    borrowed = frozenset({(1, "prep", 2)})
    recent = StoreFacts(runs={1: ended(1, 90), 2: ended(2, 1)}, borrowed=borrowed)
    assert plan(files, recent, NOW, 30 * DAY).removals == []
    both_old = StoreFacts(runs={1: ended(1, 90), 2: ended(2, 60)}, borrowed=borrowed)
    assert removed(plan(files, both_old, NOW, 30 * DAY)) == {("outputs", "runs/1")}


def test_bundles_go_when_no_kept_run_uses_them_and_they_are_old_enough() -> None:
    files = [
        f("bundles/live.tar.gz", modified=0.0),
        f("bundles/recent-run.tar.gz", modified=0.0),
        f("bundles/old-run.tar.gz", modified=0.0),
        f("bundles/orphan-unknown-age.tar.gz"),
        f("bundles/orphan-just-uploaded.tar.gz", modified=NOW - 5),
    ]
    facts = StoreFacts(
        runs={
            1: RunFacts(1, "running", None, "live"),
            2: ended(2, 1, "recent-run"),
            3: ended(3, 60, "old-run"),
        }
    )
    result = plan(files, facts, NOW, 30 * DAY)
    assert removed(result) == {
        ("bundles", "bundles/old-run.tar.gz"),
        ("bundles", "bundles/orphan-unknown-age.tar.gz"),
    }


def test_staged_outputs_go_unless_their_attempt_still_runs() -> None:
    files = [f(".staging/7/out.txt"), f(".staging/8/out.txt"), f(".staging/8/more.txt")]
    facts = StoreFacts(runs={}, running_attempts=frozenset({7}))
    result = plan(files, facts, NOW, 30 * DAY)
    assert removed(result) == {("staged", ".staging/8")}
    assert result.totals()["staged"] == {"files": 2, "bytes": 20}


def test_files_shoal_did_not_lay_out_are_never_touched() -> None:
    files = [
        f("inputs/data.csv"),
        f("runs/notes.txt"),
        f("runs/x/t/y"),
        f("runs/5/loose.txt"),  # not in a task folder: its run's folder is not removed whole
        f("runs/5/t/out.txt"),
        f("bundles/readme.md"),
    ]
    result = plan(files, StoreFacts(runs={}), NOW, 0)
    assert removed(result) == {("outputs", "runs/5/t")}


def test_a_plan_survives_its_json_form() -> None:
    files = [f("runs/1/t/a", 3), f(".staging/2/a", 4)]
    result = plan(files, StoreFacts(runs={}, needed=frozenset()), NOW, 0)
    again = Plan.from_dict(result.to_dict())
    assert again == result
    assert again.totals()["staged"] == {"files": 1, "bytes": 4}
