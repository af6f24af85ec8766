"""A worker asks for short tasks ahead of its free slots: about a tenth of a
second of work per slot, so that its slots seldom wait on a sync and a sync
reports many tasks at once, yet other workers are not left idle while it
holds work they could run."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.agent.client import AgentClient
from shoal.agent.worker import Agent


def agent_that_ran(tmp_path: Path, slots: int, seconds: float, tasks: int = 5) -> Agent:
    agent = Agent(
        AgentClient("http://127.0.0.1:9", "token"), slots=slots, workdir=str(tmp_path), quiet=True
    )
    agent.durations.extend([seconds] * tasks)
    return agent


@pytest.mark.parametrize(
    ("slots", "seconds", "asked"),
    [
        (1, 0.001, 1 + 64),  # no-ops: as many as a sync can use, no more
        (2, 0.001, 2 + 128),
        (1, 0.04, 1 + 2),  # 40 ms tasks: two each slot, a tenth of a second
        (2, 0.3, 2 + 2),  # under half a second: one each slot
        (2, 1.0, 2),  # longer: only what the free slots take
    ],
)
def test_an_idle_worker_asks_for_a_tenth_of_a_second_of_short_tasks_ahead_per_slot(
    tmp_path: Path, slots: int, seconds: float, asked: int
) -> None:
    assert agent_that_ran(tmp_path, slots, seconds)._room() == asked


def test_a_new_worker_asks_only_for_its_free_slots_until_it_knows_its_tasks(
    tmp_path: Path,
) -> None:
    assert agent_that_ran(tmp_path, 2, 0.001, tasks=2)._room() == 2
