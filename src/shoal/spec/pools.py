"""Pool files (``pools.yaml``): the machines ``shoal up`` and ``shoal run`` bring up.

::

    pools:
      - name: cpu
        provider: aws            # any known provider (shoal.launch.providers)
        count: 4                 # a fixed size; or min/max to follow the queue
        slots: 8                 # tasks a machine runs at once
        labels: {big: true}      # or a list of words, each meaning true
        idle_stop: 10m           # or 90s, 1h, seconds, or 'never'
        region: eu-west-1        # the provider's own fields from here on
      - name: edge
        provider: ssh
        inventory: hosts.yaml    # a hosts inventory, relative to this file

``name`` and ``provider`` are required; a pool says how many machines it has
with ``count`` or with ``min`` and ``max`` (an ``ssh`` pool may say neither:
every host of its inventory). The other keys are the provider's fields, as
its :class:`~shoal.launch.contract.ProviderSchema` declares them, checked
without importing the provider. ``idle_stop`` left out means never for
machines shoal does not rent and 10 minutes for rented ones; ``never`` says
never outright (``Pool.idle_stop`` is then None). Credentials are never in
the file: each provider says which variable or file it reads them from, and
a missing one is named here.

Every mistake is one line naming the file, the line and the pool.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shoal.exceptions import SpecError
from shoal.launch import providers
from shoal.launch.contract import FieldSpec, Pool, ProviderSchema
from shoal.spec import bounds
from shoal.spec.bounds import Fail, shown
from shoal.spec.fields import parse_duration, suggest, whole_number
from shoal.spec.lines import line_of, parse_document

__all__ = ["COMMON_FIELDS", "MAX_MACHINES", "RENTED_IDLE_STOP", "PoolFile", "load", "parse_text"]

# The fields every pool may have; the rest are its provider's.
COMMON_FIELDS = ("name", "provider", "count", "min", "max", "slots", "labels", "idle_stop")
# The most machines one pool may have.
MAX_MACHINES = 10_000
# How long a rented machine may stay idle when its pool does not say.
RENTED_IDLE_STOP = 600.0
# A pool's name names its machines (``cpu-1``) and, on clouds, their tags.
MAX_POOL_NAME = 60
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_KINDS = {
    "str": "a string",
    "int": "a whole number",
    "number": "a number",
    "bool": "true or false",
    "list": "a list of strings, e.g. [a, b]",
    "map": "a mapping, e.g. {key: value}",
    "duration": "a duration, e.g. 90s, 30m, 4h (or seconds)",
}


@dataclass(frozen=True)
class PoolFile:
    """The pools of one pool file, in the order it lists them."""

    pools: tuple[Pool, ...]
    path: str


def load(path: str | Path, *, environ: Mapping[str, str] | None = None) -> PoolFile:
    """Read and check the pool file at ``path`` (credentials looked for in ``environ``)."""
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > bounds.MAX_FILE_BYTES:
            raise SpecError("is larger than a pool file can be", path=str(path))
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such pool file (check the path)", path=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a folder, not a pool file", path=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("is not UTF-8 text", path=str(path)) from None
    except OSError as e:
        raise SpecError(f"cannot be read: {e.strerror}", path=str(path)) from None
    return parse_text(text, path=str(path), base=p.parent, environ=environ)


def parse_text(
    text: str,
    *,
    path: str = "<pools>",
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> PoolFile:
    """Check a pool file given as text; ``path`` names it in messages, ``base`` is its folder."""
    data = parse_document(text, path)

    def error(message: str, line: int | None = None, pool: str | None = None) -> SpecError:
        return SpecError(message, path=path, line=line, task=pool, kind="pool")

    if not isinstance(data, dict):
        raise error("a pool file is a mapping with a 'pools' list", line_of(data))
    for key in data:
        if key != "pools":
            raise error(f"unknown field '{key}'{suggest(key, ['pools'])}", line_of(data, key))
    entries = data.get("pools")
    if not isinstance(entries, list) or not entries:
        raise error(
            "'pools' must be a non-empty list, e.g. pools: [{name: cpu, provider: local, "
            "count: 2}]",
            line_of(data, "pools"),
        )
    reader = _Reader(error, base or Path("."), os.environ if environ is None else environ)
    pools: list[Pool] = []
    seen: dict[str, int | None] = {}
    for i, raw in enumerate(entries):
        if not isinstance(raw, dict):
            raise error(f"pool #{i + 1} must be a mapping of fields", line_of(data, "pools"))
        pool = reader.pool(raw, f"#{i + 1}")
        if pool.name in seen:
            raise error(
                f"duplicate pool name (first at line {seen[pool.name]})", line_of(raw), pool.name
            )
        seen[pool.name] = line_of(raw)
        pools.append(pool)
    return PoolFile(pools=tuple(pools), path=path)


class _Reader:
    """Reads one pool entry after another, failing with one line for the first mistake."""

    def __init__(self, error: Fail, base: Path, environ: Mapping[str, str]) -> None:
        self.error = error
        self.base = base
        self.environ = environ

    def pool(self, raw: dict[str, Any], label: str) -> Pool:
        error, line = self.error, line_of(raw)

        def where(key: str) -> int | None:
            return line_of(raw, key) or line

        name = self.name(raw, label)
        provider = raw.get("provider")
        if provider is None:
            self.misspelt(raw, "provider", name)
            raise error(f"has no 'provider' (known: {', '.join(providers.names())})", line, name)
        if not isinstance(provider, str) or provider not in providers.names():
            raise error(
                f"no provider called {shown(provider)} (known: {', '.join(providers.names())})",
                where("provider"),
                name,
            )
        schema = providers.schema(provider)
        known = (*COMMON_FIELDS, *schema.fields)
        for key in raw:
            if key not in known:
                raise error(f"unknown field '{key}'{suggest(key, known)}", where(key), name)
        fields = self.provider_fields(raw, schema, name)
        size = self.size(raw, name, required=provider != "ssh")
        pool = Pool(
            name=name,
            provider=provider,
            slots=(
                whole_number(
                    raw["slots"], "slots", where("slots"), name, 1, bounds.MAX_SLOTS, error
                )
                if "slots" in raw
                else None
            ),
            labels=self.labels(raw, name),
            idle_stop=self.idle_stop(raw, name, schema),
            fields=fields,
            **size,
        )
        if schema.credentials is not None:
            missing = schema.credentials(fields, self.environ)
            if missing:
                raise error(missing, where("provider"), name)
        if provider == "ssh":
            pool = self.ssh_pool(raw, pool)
        return pool

    def name(self, raw: dict[str, Any], label: str) -> str:
        name = raw.get("name")
        if name is None:
            self.misspelt(raw, "name", label)
            raise self.error(
                "has no 'name' (a word naming the pool, e.g. cpu)", line_of(raw), label
            )
        line = line_of(raw, "name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise self.error(
                f"'name' must be a word of letters, digits, '_' and '-', not {shown(name)}",
                line,
                label,
            )
        if len(name) > MAX_POOL_NAME:
            raise self.error(
                f"'name' has {len(name)} characters; the most is {MAX_POOL_NAME} "
                "(it names the pool's machines)",
                line,
                bounds.short_name(name),
            )
        return name

    def misspelt(self, raw: dict[str, Any], wanted: str, label: str) -> None:
        """A key that is ``wanted`` misspelt is the mistake to name, not ``wanted`` missing."""
        for key in raw:
            if key not in COMMON_FIELDS and suggest(key, [wanted]).startswith(" (did you"):
                raise self.error(
                    f"unknown field '{key}'{suggest(key, [wanted])}", line_of(raw, key), label
                )

    def size(self, raw: dict[str, Any], name: str, *, required: bool) -> dict[str, Any]:
        """``count``, or ``min`` and ``max``: the Pool's fields they give."""
        error = self.error

        def number(key: str, low: int) -> int:
            return whole_number(raw[key], key, line_of(raw, key), name, low, MAX_MACHINES, error)

        if "count" in raw:
            if "min" in raw or "max" in raw:
                raise error(
                    "give 'count' (a fixed size) or 'min' and 'max' (to follow the queue), "
                    "not both",
                    line_of(raw, "count"),
                    name,
                )
            return {"count": number("count", 1)}
        if "min" in raw and "max" not in raw:
            raise error(
                "'min' needs a 'max' (the most machines the pool may have)",
                line_of(raw, "min"),
                name,
            )
        if "max" in raw:
            low = number("min", 0) if "min" in raw else 0
            high = number("max", 1)
            if low > high:
                raise error(f"'min' ({low}) is more than 'max' ({high})", line_of(raw, "min"), name)
            return {"min": low, "max": high}
        if required:
            raise error(
                "says not how many machines: give 'count: N', or 'min' and 'max' to follow "
                "the queue",
                line_of(raw),
                name,
            )
        return {}

    def labels(self, raw: dict[str, Any], name: str) -> dict[str, Any]:
        value = raw.get("labels", {})
        line = line_of(raw, "labels")
        if isinstance(value, list):
            if not all(isinstance(v, str) and v and not any(c.isspace() for c in v) for v in value):
                raise self.error(
                    "'labels' as a list must hold words, each meaning true, e.g. [gpu, big]",
                    line,
                    name,
                )
            return {v: True for v in value}
        if not isinstance(value, dict):
            raise self.error("'labels' must be a mapping, e.g. {gpu: true}", line, name)
        for key, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            if not isinstance(v, (str, int, float)) or len(key) > bounds.MAX_NAME:
                raise self.error(
                    f"label '{bounds.short_name(key)}' must be a word, a number or true/false",
                    line_of(value, key) or line,
                    name,
                )
        return dict(value)

    def idle_stop(self, raw: dict[str, Any], name: str, schema: ProviderSchema) -> float | None:
        """Seconds idle before a machine is stopped; None: never."""
        if "idle_stop" not in raw:
            return RENTED_IDLE_STOP if schema.rented else None
        value = raw["idle_stop"]
        if isinstance(value, str) and value.strip().lower() == "never":
            return None
        try:
            return parse_duration(value)
        except ValueError as e:
            raise self.error(
                f"'idle_stop': {e}; or 'never' to keep the machines until 'shoal down'",
                line_of(raw, "idle_stop"),
                name,
            ) from None

    def provider_fields(
        self, raw: dict[str, Any], schema: ProviderSchema, name: str
    ) -> dict[str, Any]:
        """The provider's own fields, checked against its schema, as plain JSON data."""
        out: dict[str, Any] = {}
        for key, spec in schema.fields.items():
            if key not in raw:
                if spec.required:
                    about = f" ({spec.help})" if spec.help else ""
                    raise self.error(f"needs '{key}'{about}", line_of(raw), name)
                continue
            out[key] = self.field(raw[key], key, spec, line_of(raw, key), name)
        return out

    def field(self, value: Any, key: str, spec: FieldSpec, line: int | None, name: str) -> Any:
        about = f" ({spec.help})" if spec.help else ""
        try:
            made = _of_kind(value, spec.kind)
        except ValueError:
            raise self.error(
                f"'{key}' must be {_KINDS.get(spec.kind, spec.kind)}{about}", line, name
            ) from None
        if spec.choices and made not in spec.choices:
            raise self.error(
                f"'{key}' must be one of {', '.join(spec.choices)}, not {shown(value)}", line, name
            )
        return made

    def ssh_pool(self, raw: dict[str, Any], pool: Pool) -> Pool:
        """The pool of the inventory an ``ssh`` pool names, sized and labelled as it says."""
        from shoal.launch.ssh.provider import pool_of
        from shoal.spec import inventory

        line = line_of(raw, "inventory")
        given = Path(str(pool.fields["inventory"])).expanduser()
        found = given if given.is_absolute() else self.base / given
        if not found.is_file():
            raise self.error(
                f"no inventory at '{pool.fields['inventory']}' "
                "(the path is relative to the pool file's folder)",
                line,
                pool.name,
            )
        made = pool_of(inventory.load(found), pool.name)
        hosts = [dict(h) for h in made.fields["hosts"]]
        most = pool.count if pool.count is not None else pool.max
        if most is not None and most > len(hosts):
            key = "count" if pool.count is not None else "max"
            raise self.error(
                f"'{key}' is {most} but the inventory has {len(hosts)} host"
                f"{'s' if len(hosts) != 1 else ''}",
                line_of(raw, key),
                pool.name,
            )
        if pool.slots is not None:
            # The pool file's word is the pool's: every host runs that many at once.
            for h in hosts:
                h["slots"] = pool.slots
        # Neither count nor min/max: every host of the inventory.
        count = pool.count if pool.count is not None or pool.max is not None else len(hosts)
        # The inventory's path absolute: the pool is remembered and used from elsewhere.
        return dataclasses.replace(
            pool, count=count, fields={"inventory": str(found.resolve()), "hosts": hosts}
        )


def _of_kind(value: Any, kind: str) -> Any:
    """``value`` as plain JSON data of ``kind``; ValueError if it is not of it."""
    if kind == "str":
        if not isinstance(value, str) or not value or "\x00" in value:
            raise ValueError(kind)
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(kind)
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(kind)
        if not math.isfinite(value):
            raise ValueError(kind)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(kind)
        return value
    if kind == "list":
        if not isinstance(value, list) or not all(
            isinstance(v, str) and "\x00" not in v for v in value
        ):
            raise ValueError(kind)
        return list(value)
    if kind == "map":
        if not isinstance(value, dict):
            raise ValueError(kind)
        return _plain(value)
    if kind == "duration":
        return parse_duration(value)
    return _plain(value)


def _plain(value: Any) -> Any:
    """YAML data as plain JSON data (mappings as dicts); ValueError for a date, say."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise ValueError(type(value).__name__)
