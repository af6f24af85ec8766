"""Task files, host inventories and flows: read, validated and expanded into a DAG.

Nothing here knows the network or the database.
"""

from shoal.exceptions import SpecError
from shoal.spec.taskfile import (
    RunSpec,
    TaskSpec,
    load,
    parse_data,
    parse_duration,
    parse_text,
    spec_from_dict,
)

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
