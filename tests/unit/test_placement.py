"""Which worker may take which task, and the one phrase that says why none may."""

from __future__ import annotations

import pytest

from shoal.scheduler.placement import WorkerShape, has_labels, label_text, why_unplaceable


@pytest.mark.parametrize(
    ("requires", "labels", "ok"),
    [
        ({}, {}, True),
        ({"gpu": True}, {"gpu": True, "zone": "eu"}, True),
        ({"gpu": True}, {"gpu": 1}, False),  # a boolean equals only a boolean
        ({"n": 1}, {"n": True}, False),
        ({"n": 1}, {"n": 1.0}, True),  # as JSON numbers
        ({"zone": "eu"}, {"zone": "EU"}, False),
        ({"a": 1, "b": 2}, {"a": 1}, False),  # every one of them
        ({"gpu": None}, {}, False),  # named, with its value, even null
    ],
)
def test_labels_match_as_json_values(
    requires: dict[str, object], labels: dict[str, object], ok: bool
) -> None:
    assert has_labels(requires, labels) is ok


def test_labels_read_as_the_task_file_wrote_them() -> None:
    assert label_text({"gpu": True, "zone": "eu-1", "cores": 8, "ratio": 0.5}) == (
        "gpu=true, zone=eu-1, cores=8, ratio=0.5"
    )


WORKERS = [WorkerShape("w1", 4, {"zone": "eu"}), WorkerShape("w2", 8, {"gpu": True})]


@pytest.mark.parametrize(
    ("slots", "host", "requires", "why"),
    [
        (2, None, {}, None),
        (8, None, {"gpu": True}, None),
        (16, None, {}, "needs 16 slots, more slots than any worker has (8 at most)"),
        (1, "w9", {}, "is pinned to host 'w9', no such worker"),
        (6, "w1", {}, "is pinned to host 'w1', which has 4 slots; it needs 6"),
        (1, "w1", {"gpu": True}, "is pinned to host 'w1', which lacks labels gpu=true"),
        (1, "w2", {"gpu": True}, None),
        (1, None, {"ram": "big"}, "needs labels ram=big that no worker has"),
        (6, None, {"zone": "eu"}, "needs labels zone=eu that no worker with 6 slots has"),
        (
            1,
            None,
            {"zone": "eu", "gpu": True},
            "needs labels zone=eu, gpu=true that no one worker has together",
        ),
    ],
)
def test_why_no_worker_can_take_a_task(
    slots: int, host: str | None, requires: dict[str, object], why: str | None
) -> None:
    assert why_unplaceable(slots, host, requires, WORKERS) == why


def test_with_no_worker_at_all_there_is_nothing_to_say() -> None:
    assert why_unplaceable(64, "anywhere", {"gpu": True}, []) is None
