"""The boss's API described in OpenAPI 3.0: every route, its parameters, bodies and answers.

Served at ``/openapi.json`` (no credentials needed to read it). The test
suite checks it against the OpenAPI specification and fuzzes every route
from it, so a route added without its description here fails a test.
"""

from __future__ import annotations

from typing import Any

from shoal import protocol as p
from shoal.boss.openapi_schemas import INT64 as _INT64
from shoal.boss.openapi_schemas import OBJECT as _OBJECT
from shoal.boss.openapi_schemas import components as _components
from shoal.boss.openapi_schemas import ref as _ref

__all__ = ["openapi_schema"]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answers(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    described = {
        400: "Bad request",
        401: "Missing or wrong token",
        403: "Refused: this credential may not call this route or act for that worker "
        "(or a cross-site request, or one without the CSRF token)",
        404: "No such run, task, worker, attempt or file",
        408: "The upload sent nothing for too long",
        409: "The attempt no longer holds its task",
        413: "Over a limit",
        415: "The body is not of the type the route reads",
        503: "The boss cannot write its database or datastore",
    }
    out: dict[str, Any] = {"200": ok}
    for code in sorted({400, 401, 403, 503, *errors}):
        out[str(code)] = _json(_ref("Error"), described[code])
    return out


def _path(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_RUN = _path("run", "a run's id, its name (its latest run) or 'latest'")
_TASK = _path("task", "a task's name")
_ATTEMPT = _path("attempt", "an attempt's id", _INT64)
_FILE = _path("path", "a datastore path (relative, '/'-separated)")
_STATE = _query(
    "state",
    "keep tasks in these states",
    {
        "type": "array",
        "items": {
            "type": "string",
            "enum": [
                "waiting",
                "ready",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                "upstream_failed",
            ],
        },
    },
)
_BYTES = {
    "required": True,
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}
_SIZE = _json({"type": "object", "properties": {"size": {"type": "integer"}}}, "Stored")


def _operation(summary: str, answers: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": answers, **more}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _token_paths(obj: dict[str, Any]) -> dict[str, Any]:
    """The credentials' routes (the boss's token only)."""
    v = p.API_PREFIX
    token = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["read", "worker", "per-worker"]},
            "worker": {"type": "integer", "nullable": True},
            "created": {"type": "number"},
            "expires": {"type": "number", "nullable": True},
            "last_used": {"type": "number", "nullable": True},
            "revoked": {"type": "number", "nullable": True},
        },
    }
    issued = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string"},
            "token": {"type": "string", "description": "shown once; stored hashed"},
        },
    }
    return {
        f"{v}/tokens": {
            "get": _operation(
                "The tokens (never their secrets)",
                _answers(_json({"type": "array", "items": token}, "The tokens")),
                parameters=[
                    _query("all", "also the tokens of registered workers", {"type": "string"})
                ],
            ),
            "post": _operation(
                "Add a read or worker token",
                _answers(_json(issued, "The new token"), 413, 415),
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["name", "kind"],
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {"type": "string", "enum": ["read", "worker"]},
                            "expires_in": {"type": "number", "nullable": True},
                        },
                    }
                ),
            ),
        },
        f"{v}/tokens/{{name}}": {
            "delete": _operation(
                "Revoke a token (and the tokens of the workers it registered)",
                _answers(obj, 404),
                parameters=[_path("name", "the token's name")],
            )
        },
    }


def openapi_schema() -> dict[str, Any]:
    """The whole description, as a JSON-ready dict."""
    v = p.API_PREFIX
    obj = _json(_OBJECT, "An object")
    arr = _json({"type": "array", "items": _OBJECT}, "A list")
    text = {"description": "Text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    paths: dict[str, Any] = {
        f"{v}/workers": {
            "post": _operation(
                "Register a worker",
                _answers(_json(_ref("Registered"), "Registered"), 413, 415),
                requestBody=_body(_ref("Registration")),
            ),
            "get": _operation("List workers", _answers(arr)),
        },
        f"{v}/workers/{{worker}}": {
            "delete": _operation(
                "A worker leaves; what it held runs elsewhere",
                _answers(obj, 404),
                parameters=[
                    _path("worker", "a worker's id", _INT64),
                    _query("reason", "why it stopped by itself", {"type": "string"}),
                ],
            )
        },
        f"{v}/workers/{{worker}}/lost": {
            "post": _operation(
                "A launcher says a worker is gone with its machine: what it held runs again now",
                _answers(obj, 404),
                parameters=[
                    _path("worker", "a worker's id", _INT64),
                    _query("reason", "why it is gone", {"type": "string"}),
                ],
            )
        },
        f"{v}/workers/{{worker}}/drain": {
            "post": _operation(
                "Ask a worker to finish what it runs, take no more, and leave",
                _answers(obj, 400, 403, 404),
                parameters=[_path("worker", "a connected worker's id or name")],
            )
        },
        f"{v}/workers/{{worker}}/stop": {
            "post": _operation(
                "Ask a worker to stop now: what it runs runs again elsewhere",
                _answers(obj, 400, 403, 404),
                parameters=[_path("worker", "a connected worker's id or name")],
            )
        },
        f"{v}/sync": {
            "post": _operation(
                "One worker round trip: report, renew, take work",
                _answers(_json(_ref("SyncResponse"), "Work to start and stop"), 404, 413, 415),
                requestBody=_body(_ref("SyncRequest")),
            )
        },
        f"{v}/attempts/{{attempt}}/outputs/{{path}}": {
            "put": _operation(
                "Send one output of a running attempt (kept aside until its report wins)",
                _answers(_SIZE, 404, 408, 409),
                parameters=[_ATTEMPT, _FILE],
                requestBody=_BYTES,
            )
        },
        f"{v}/attempts/{{attempt}}/log": {
            "put": _operation(
                "Send an attempt's log",
                _answers(_SIZE, 404, 408),
                parameters=[_ATTEMPT],
                requestBody=_BYTES,
            )
        },
        f"{v}/bosses": {"get": _operation("The bosses serving this database", _answers(arr))},
        f"{v}/demand": {
            "get": _operation(
                "What waits for a worker over every run, and the connected workers",
                _answers(_json({"type": "object"}, "Ready tasks by need, run time, workers")),
            )
        },
        f"{v}/machines": {
            "get": _operation(
                "The machines shoal started, each with its agent",
                _answers(arr),
                parameters=[
                    _query("owner", "only the machines of this launcher", {"type": "string"})
                ],
            ),
            "put": _operation(
                "Record machines a launcher starts (by owner and name)",
                _answers(
                    _json({"type": "object", "properties": {"recorded": _INT64}}, "Recorded"),
                    413,
                    415,
                ),
                requestBody=_body(
                    {
                        "type": "object",
                        "required": ["owner", "machines"],
                        "properties": {
                            "owner": {"type": "string"},
                            "machines": {"type": "array", "items": _ref("Machine")},
                        },
                    }
                ),
            ),
        },
        **_token_paths(obj),
        f"{v}/runs": {
            "post": _operation(
                "Submit a run",
                _answers(
                    _json({"type": "object", "properties": {"run": _INT64}}, "The run's id"),
                    404,
                    413,
                    415,
                ),
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "the same key again returns the first submission's run",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{8,64}$"},
                    }
                ],
                requestBody=_body(_ref("Submission")),
            ),
            "get": _operation("List runs, newest first", _answers(arr)),
        },
        f"{v}/runs/{{run}}": {
            "get": _operation(
                "One run, with counts by state", _answers(obj, 404), parameters=[_RUN]
            )
        },
        f"{v}/runs/{{run}}/tasks": {
            "get": _operation("A run's tasks", _answers(arr, 404), parameters=[_RUN, _STATE])
        },
        f"{v}/runs/{{run}}/tasks/{{task}}": {
            "get": _operation(
                "One task with its attempts", _answers(obj, 404), parameters=[_RUN, _TASK]
            )
        },
        f"{v}/runs/{{run}}/tasks/{{task}}/log": {
            "get": _operation(
                "The log of a task's latest attempt (or ?attempt=N)",
                _answers(text, 404),
                parameters=[
                    _RUN,
                    _TASK,
                    _query("attempt", "the attempt's number", {"type": "integer"}),
                    _query("offset", "from this byte on", {"type": "integer"}),
                    _query("tail", "only the last N lines", {"type": "integer"}),
                ],
            )
        },
        f"{v}/runs/{{run}}/tasks/{{task}}/events": {
            "get": _operation("A task's history", _answers(arr, 404), parameters=[_RUN, _TASK])
        },
        f"{v}/runs/{{run}}/tasks/{{task}}/links": {
            "get": _operation(
                "The tasks a task runs after (with the outputs it was given) and those after it",
                _answers(obj, 404),
                parameters=[_RUN, _TASK],
            )
        },
        f"{v}/runs/{{run}}/tasks/{{task}}/cancel": {
            "post": _operation(
                "Cancel one unfinished task (what runs after it does not run)",
                _answers(obj, 400, 403, 404),
                parameters=[_RUN, _TASK],
            )
        },
        f"{v}/runs/{{run}}/tasks/{{task}}/retry": {
            "post": _operation(
                "Run one failed or cancelled task again, with what its end stopped",
                _answers(obj, 400, 403, 404),
                parameters=[_RUN, _TASK],
            )
        },
        f"{v}/runs/{{run}}/results": {
            "get": _operation(
                "The results of a run's tasks, by name", _answers(obj, 404), parameters=[_RUN]
            )
        },
        f"{v}/runs/{{run}}/cancel": {
            "post": _operation(
                "Cancel a run's unfinished tasks", _answers(obj, 403, 404), parameters=[_RUN]
            )
        },
        f"{v}/runs/{{run}}/retry": {
            "post": _operation(
                "Run a run's failed tasks again", _answers(obj, 403, 404), parameters=[_RUN]
            )
        },
        f"{v}/runs/{{run}}/page": {
            "get": _operation(
                "A page of a run's tasks",
                _answers(obj, 404),
                parameters=[
                    _RUN,
                    _STATE,
                    _query("q", "names containing this", {"type": "string"}),
                    _query(
                        "sort",
                        "order",
                        {"type": "string", "enum": ["id", "duration", "-duration", "name"]},
                    ),
                    _query("limit", "at most this many", {"type": "integer"}),
                    _query("offset", "after this many", {"type": "integer"}),
                ],
            )
        },
        f"{v}/runs/{{run}}/graph": {
            "get": _operation(
                "The run's DAG, one node per matrix group", _answers(obj, 404), parameters=[_RUN]
            )
        },
        f"{v}/runs/{{run}}/throughput": {
            "get": _operation("Tasks finished per second", _answers(obj, 404), parameters=[_RUN])
        },
        f"{v}/events": {
            "get": _operation(
                "State changes, oldest first",
                _answers(arr, 404),
                parameters=[_query("run", "only this run's", {"type": "string"})],
            )
        },
        f"{v}/data": {
            "get": _operation(
                "The files under a datastore folder (with detail=1: size, time, sha256)",
                _answers(
                    _json(
                        {
                            "type": "array",
                            "items": {"oneOf": [{"type": "string"}, _ref("FileInfo")]},
                        },
                        "Paths, or each file's details",
                    )
                ),
                parameters=[
                    _query("prefix", "a datastore folder", {"type": "string"}),
                    _query("detail", "1: each file's details", {"type": "string"}),
                ],
            )
        },
        f"{v}/gc": {
            "post": _operation(
                "Remove the outputs, logs, bundles and staged files no run needs (admin)",
                _answers(_json(_OBJECT, "What was (dry_run: would be) removed"), 403, 413, 415),
                requestBody=_body(
                    {
                        "type": "object",
                        "properties": {
                            "older_than": {"type": "number", "minimum": 0},
                            "dry_run": {"type": "boolean"},
                        },
                    }
                ),
            )
        },
        f"{v}/data/{{path}}": {
            "get": _operation(
                "Download a datastore file",
                _answers(
                    {
                        "description": "The file",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    404,
                ),
                parameters=[_FILE],
            ),
            "put": _operation(
                "Upload a datastore file (streamed, renamed into place)",
                _answers(_SIZE, 408),
                parameters=[_FILE],
                requestBody=_BYTES,
            ),
            "delete": _operation(
                "Remove a file or a folder (admin; never shoal's runs/, logs/, bundles/)",
                _answers(
                    _json(
                        {
                            "type": "object",
                            "properties": {
                                "files": {"type": "integer"},
                                "bytes": {"type": "integer"},
                            },
                        },
                        "Removed",
                    ),
                    403,
                    404,
                ),
                parameters=[_FILE],
            ),
        },
        f"{v}/stream": {
            "get": _operation(
                "Server-sent events, one each time something changes",
                {
                    "200": {
                        "description": "An endless stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/metrics": {"get": _operation("Prometheus metrics", _answers(text))},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "shoal boss", "version": str(p.PROTOCOL_VERSION)},
        "security": [{"token": []}],
        "paths": paths,
        "components": _components(),
    }
