"""Rows as the store gives them: JSON columns as text, their values decoded when read."""

from __future__ import annotations

from shoal.store.rows import ActiveWorker, Event, ReadyTask, RunRow, TaskRow, decode, encode
from tests.memstore import MemoryStore


def test_values_are_stored_compactly_and_read_back_the_same() -> None:
    value = {"b": [1, 2.5, None, True], "a": "é", "c": {}}
    assert encode(value) == '{"b":[1,2.5,null,true],"a":"\\u00e9","c":{}}'
    assert decode(encode(value)) == value
    assert decode(None, []) == [] and decode("", {}) == {} and decode(None) is None


def _task(**columns: object) -> TaskRow:
    base = dict.fromkeys(TaskRow._fields)
    base.update(spec_json='{"run":["x"]}', has_result=False, cached=False)
    base.update(columns)
    return TaskRow(**base)  # type: ignore[arg-type]


def test_a_task_rows_json_columns_read_as_values() -> None:
    task = _task(operands_json='["a","b"]', outputs_json='["o.txt"]', has_result=1, result_json="0")
    assert task.spec == {"run": ["x"]}
    assert task.operands == ["a", "b"] and task.outputs == ["o.txt"]
    assert task.result == 0  # a result of 0 is a result
    empty = _task()
    assert (empty.operands, empty.outputs, empty.result) == ([], [], None)
    assert _task(has_result=False, result_json="5").result is None  # no result: none shown


def test_other_rows_decode_their_own_columns() -> None:
    ready = ReadyTask(1, 2, "t", '{"env":{}}', 1, None, 0, 0, None, None, "t", None)
    assert (ready.spec, ready.requires, ready.operands) == ({"env": {}}, {}, [])
    assert ActiveWorker(1, "w", 2, '{"gpu":true}').labels == {"gpu": True}
    run = RunRow(1, "r", "running", 0.0, None, '{"A":"1"}', None, None, None, None, 1, 1, None)
    assert run.env == {"A": "1"}


def test_an_event_names_only_what_it_is_about() -> None:
    e = Event(1.0, "run_submitted", 3, detail="nightly")
    assert (e.run_id, e.task_id, e.attempt_id, e.worker_id, e.detail) == (
        3,
        None,
        None,
        None,
        "nightly",
    )


def test_a_memory_transaction_that_raises_changes_nothing() -> None:
    store = MemoryStore()
    try:
        with store.transaction() as tx:
            tx.insert_run(name="r", env={}, setup=None, bundle=None, source=None, total=0, now=1.0)
            raise RuntimeError("midway")
    except RuntimeError:
        pass
    with store.read() as tx:
        assert tx.list_runs() == []
    with store.transaction() as tx:
        run_id = tx.insert_run(
            name="r", env={"A": "1"}, setup=None, bundle=None, source=None, total=0, now=1.0
        )
    with store.read() as tx:
        (run,) = tx.list_runs()
        assert (run.id, run.env, run.unfinished) == (run_id, {"A": "1"}, 0)
