"""The datastore's routes: list, download (streamed), upload (streamed, put in place whole).

Task outputs (``runs/``) are written only by the attempts that made them
(``PUT /v1/attempts/<id>/outputs/<file>``); this route refuses to write there,
so that nothing replaces a task's outputs after its report won.

A download carries the sha256 digests recorded when the file was written
(``X-Shoal-Sha256``, see :mod:`shoal.datastore.integrity`): the worker agent
checks what it received against them. The boss hashes what it sends too, and
logs a ``datastore_corrupt`` event when it does not match. Both ways the file
is streamed a chunk at a time, never held whole.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.web import Context, json_response
from shoal.datastore.base import Datastore
from shoal.datastore.integrity import DIGEST_HEADER, Hashing, Record
from shoal.datastore.layout import OUTPUTS, RECORDS, STAGING, origin
from shoal.exceptions import BadInput

__all__ = ["data_routes"]

log = logging.getLogger("shoal.boss")


def data_routes(ctx: Context) -> list[BaseRoute]:
    datastore = ctx.datastore

    async def data_get(request: Request) -> Response:
        path = request.path_params["path"]
        # In a thread: on a remote datastore each is a request of its own.
        size = await run_in_threadpool(datastore.size, path)  # NotFound before the answer starts
        record = await run_in_threadpool(datastore.record, path)
        headers = {"Content-Length": str(size)}
        if record is not None:
            headers[DIGEST_HEADER] = ",".join(record.digests())
        kind, _ = mimetypes.guess_type(path)
        return StreamingResponse(
            _checked(datastore, path, record),
            media_type=kind or "application/octet-stream",
            headers=headers,
        )

    async def data_put(request: Request) -> Response:
        path = request.path_params["path"]
        if path.startswith((OUTPUTS, STAGING)):
            raise BadInput(
                f"'{path[:80]}' is where tasks' outputs live: only the attempt that made "
                "an output writes it"
            )
        if path.startswith(RECORDS + "/"):
            raise BadInput(
                f"'{path[:80]}' is where the datastore records each file's sha256: "
                "only the datastore writes there"
            )
        size = await datastore.write_stream(path, request.stream(), ctx.limits.upload_idle)
        ctx.health.recovered("datastore")
        return json_response({"size": size})

    async def data_list(request: Request) -> Response:
        prefix = request.query_params.get("prefix", "")
        return json_response(await run_in_threadpool(datastore.listing, prefix))

    v = p.API_PREFIX
    return [
        Route(f"{v}/data", data_list, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_get, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_put, methods=["PUT"]),
    ]


def _checked(datastore: Datastore, path: str, record: Record | None) -> Iterator[bytes]:
    """The file's chunks; what was sent is hashed, and a mismatch with its record logged."""
    hashing = Hashing()
    for chunk in datastore.chunks(path):
        hashing.write(chunk)
        yield chunk
    got = hashing.record(None)
    if record is not None and (got.size != record.size or not record.accepts(got.sha256)):
        log.error(
            str(record.mismatch(path, got.sha256)),
            extra={"event": "datastore_corrupt", "path": path, "origin": origin(path)},
        )
