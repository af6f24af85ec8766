"""Task files, host inventories, pool files and flows: read, checked and expanded into a DAG.

Nothing here knows the network or the database. The modules:

- :mod:`~shoal.spec.model`: :class:`RunSpec` and :class:`TaskSpec`, the checked run;
- :mod:`~shoal.spec.taskfile`: reading a task file or a submitted run;
- :mod:`~shoal.spec.lines`: YAML with line numbers; :mod:`~shoal.spec.bounds`: the limits;
- :mod:`~shoal.spec.expand` (matrices, ``after`` patterns, cycles),
  :mod:`~shoal.spec.task` (one task's fields), :mod:`~shoal.spec.fields` (single fields);
- :mod:`~shoal.spec.flow`, :mod:`~shoal.spec.inventory`, :mod:`~shoal.spec.bundle`;
- :mod:`~shoal.spec.pools`: pool files, each pool's provider fields checked
  against the schema its provider declares (:mod:`shoal.launch.providers`).

What makes a task the same task again (for resuming) is the scheduler's
:mod:`~shoal.scheduler.keys`.
"""

from shoal.exceptions import SpecError
from shoal.spec.fields import parse_duration
from shoal.spec.model import RunSpec, TaskSpec
from shoal.spec.taskfile import load, parse_data, parse_text, spec_from_dict

__all__ = [
    "RunSpec",
    "SpecError",
    "TaskSpec",
    "load",
    "parse_data",
    "parse_duration",
    "parse_text",
    "spec_from_dict",
]
