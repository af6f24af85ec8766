"""The store contract suite's scheduler tests, run on the in-memory store.

They run on SQLite and PostgreSQL in ``tests/integration/test_store_contract.py``;
here the same tests run on :class:`tests.memstore.MemoryStore`, which proves
that the store the scheduler's unit tests use answers as the real ones do.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from shoal.scheduler import Scheduler
from tests.integration import test_store_contract as contract
from tests.scheduling import on_memory


@pytest.fixture
def sched() -> Iterator[Scheduler]:
    yield on_memory()


# Every contract test that needs nothing but a scheduler runs here too.
SCHEDULER_TESTS = {
    name: test
    for name, test in vars(contract).items()
    if name.startswith("test_")
    and callable(test)
    and list(inspect.signature(test).parameters) == ["sched"]
}
globals().update(SCHEDULER_TESTS)


def test_the_contract_suite_is_all_here() -> None:
    # Guard against collecting nothing: the contract has this many scheduler tests.
    assert len(SCHEDULER_TESTS) >= 25
