"""The schemas of the boss's OpenAPI document: the bodies its routes take and answer.

Kept apart from :mod:`shoal.boss.openapi`, which lists the routes, so each
reads on its own.
"""

from __future__ import annotations

from typing import Any

from shoal import protocol as p

__all__ = ["INT64", "OBJECT", "components", "ref"]

OBJECT: dict[str, Any] = {"type": "object"}
INT64 = {"type": "integer", "format": "int64", "minimum": 0}


def ref(name: str) -> dict[str, Any]:
    """A reference to one of the document's schemas."""
    return {"$ref": f"#/components/schemas/{name}"}


def components() -> dict[str, Any]:
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    strings = {"type": "array", "items": {"type": "string"}}
    ints = {"type": "array", "items": INT64}
    return {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "FileInfo": {
                "type": "object",
                "required": ["path", "size"],
                "properties": {
                    "path": {"type": "string"},
                    "size": {"type": "integer"},
                    "modified": {"type": "number", "nullable": True},
                    "sha256": {"type": "string", "nullable": True},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            },
            "Registration": {
                "type": "object",
                "required": ["name", "host", "slots"],
                "properties": {
                    "name": {"type": "string"},
                    "host": {"type": "string"},
                    "slots": {"type": "integer", "format": "int64"},
                    "labels": OBJECT,
                    "pid": {"type": "integer", "format": "int64"},
                    "python": {"type": "string"},
                    "version": {"type": "string"},
                    "protocol": {"type": "integer", "format": "int64"},
                },
            },
            "Machine": {
                "type": "object",
                "required": ["name", "pool", "provider", "state"],
                "properties": {
                    "name": {"type": "string"},
                    "pool": {"type": "string"},
                    "provider": {"type": "string"},
                    "provider_id": {"type": "string"},
                    "address": {"type": "string"},
                    "slots": {"type": "integer", "format": "int64"},
                    "labels": OBJECT,
                    "state": {
                        "type": "string",
                        "enum": ["requested", "starting", "running", "stopped", "failed"],
                    },
                    "price": {"type": "number", "nullable": True},
                    "detail": {"type": "string"},
                    "agent": OBJECT,
                },
            },
            "Registered": {
                "type": "object",
                "properties": {
                    "worker_id": {"type": "integer"},
                    "lease_seconds": {"type": "number"},
                    "heartbeat_seconds": {"type": "number"},
                    "token": {
                        "type": "string",
                        "nullable": True,
                        "description": "the token this worker sends from now on",
                    },
                },
            },
            "Report": {
                "type": "object",
                "required": ["attempt_id", "outcome"],
                "properties": {
                    "attempt_id": INT64,
                    "outcome": {
                        "type": "string",
                        "enum": [p.SUCCEEDED, p.FAILED, p.CANCELLED, p.INTERRUPTED],
                    },
                    "run_id": INT64,
                    "task": {"type": "string"},
                    "exit_code": {"type": "integer", "format": "int64", "nullable": True},
                    "cause": {"type": "string", "nullable": True},
                    "result": {"nullable": True},
                    "started": {"type": "number"},
                    "ended": {"type": "number"},
                    "outputs": strings,
                    "log": {"type": "string", "nullable": True},
                    "log_uploaded": {"type": "boolean"},
                },
            },
            "SyncRequest": {
                "type": "object",
                "required": ["worker_id"],
                "properties": {
                    "worker_id": INT64,
                    "finished": {"type": "array", "items": ref("Report")},
                    "running": ints,
                    "free_slots": {"type": "integer", "format": "int64"},
                    "wait": {"type": "number", "minimum": 0},
                    "max_seconds": {"type": "number", "nullable": True},
                    "usage": {
                        "type": "object",
                        "nullable": True,
                        "description": "cpu (percent), load, cores, memory_used, memory_total",
                        "additionalProperties": {"type": "number"},
                    },
                },
            },
            "SyncResponse": {
                "type": "object",
                "properties": {
                    "assignments": {"type": "array", "items": OBJECT},
                    "cancel": ints,
                    "stop": {"type": "boolean"},
                },
            },
            "Submission": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "spec": {
                        "type": "object",
                        "description": "the run as the client expanded it (see the task file)",
                        "properties": {
                            "name": {"type": "string"},
                            "env": string_map,
                            "tasks": {"type": "array", "items": OBJECT},
                        },
                    },
                    "bundle": {"type": "string", "nullable": True},
                    "source": {"type": "string", "nullable": True},
                    "reuse": {"type": "boolean"},
                },
            },
        },
    }
