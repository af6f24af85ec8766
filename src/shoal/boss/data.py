"""The datastore's routes: list, download (streamed), upload (streamed, put in place whole),
remove, and collect what no run needs (``shoal gc``).

Task outputs (``runs/``) are written only by the attempts that made them
(``PUT /v1/attempts/<id>/outputs/<file>``); this route refuses to write there,
so that nothing replaces a task's outputs after its report won. Removing,
and gc, refuse or skip shoal's own folders in the same spirit: only gc,
which asks the database what is still needed, removes from them.

A download carries the sha256 digests recorded when the file was written
(``X-Shoal-Sha256``, see :mod:`shoal.datastore.integrity`): the worker agent
checks what it received against them. The boss hashes what it sends too, and
logs a ``datastore_corrupt`` event when it does not match. Both ways the file
is streamed a chunk at a time, never held whole.

Who may call: the boss's token (admin), every route. A worker's own token
reads only what the attempts it runs need (their inputs, their
dependencies' outputs and their run's bundle). Listing with details,
removing and gc are admin-only by design: they show or change the whole
datastore, not the paths of one attempt.
"""

from __future__ import annotations

import logging
import math
import mimetypes
from collections.abc import Iterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.auth import caller
from shoal.boss.web import Context, json_response, read_json
from shoal.datastore.base import Datastore, check_path, shown
from shoal.datastore.gc import collect, shoal_folder
from shoal.datastore.integrity import DIGEST_HEADER, Hashing, Record
from shoal.datastore.layout import OUTPUTS, RECORDS, STAGING, origin
from shoal.exceptions import BadInput, NotFound, Refused
from shoal.store import Store
from shoal.store.gc import gc_facts

__all__ = ["data_routes"]

log = logging.getLogger("shoal.boss")

# The most a gc request may say it wants kept: about three centuries, in seconds.
_MAX_AGE = 1e10


def data_routes(ctx: Context) -> list[BaseRoute]:
    datastore = ctx.datastore

    async def data_get(request: Request) -> Response:
        path = request.path_params["path"]
        worker = caller(request).worker_id
        if worker is not None and not ctx.tokens.may_read(worker, path):
            raise Refused(f"forbidden: worker {worker} runs no attempt that needs '{path[:200]}'")
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
        """The paths under a folder; with ``detail=1``, each file's size, time and sha256."""
        prefix = request.query_params.get("prefix", "")
        if request.query_params.get("detail") in ("1", "true"):
            entries = await run_in_threadpool(datastore.entries, prefix)
            if (
                not entries
                and prefix.strip("/")
                and not prefix.startswith(STAGING)
                and await run_in_threadpool(datastore.exists, prefix)
            ):
                entries = [datastore.info(prefix)]  # a file: its own line
            return json_response([e.to_dict() for e in entries])
        return json_response(await run_in_threadpool(datastore.listing, prefix))

    async def data_delete(request: Request) -> Response:
        """Remove a file, or a folder and all it holds (admin only; never shoal's folders)."""
        path = request.path_params["path"].rstrip("/")
        check_path(path)
        folder = shoal_folder(path)
        if folder is not None:
            raise Refused(
                f"'{shown(path)}' is in '{folder}', which shoal keeps for its runs: "
                "'shoal gc' removes what no run needs"
            )
        entries = await run_in_threadpool(datastore.entries, path)
        if not entries:
            if not datastore.exists(path):
                raise NotFound(f"no file or folder '{shown(path)}' in the datastore")
            entries = [datastore.info(path)]
        await run_in_threadpool(datastore.remove, path)
        return json_response({"files": len(entries), "bytes": sum(e.size for e in entries)})

    async def gc(request: Request) -> Response:
        """Remove the outputs, logs, bundles and staged files no run needs (admin only)."""
        body = await read_json(request, ctx.limits.max_body)
        older_than = body.get("older_than", 30 * 86400)
        dry_run = body.get("dry_run", False)
        if (
            isinstance(older_than, bool)
            or not isinstance(older_than, int | float)
            or not math.isfinite(older_than)
            or not 0 <= older_than <= _MAX_AGE
        ):
            raise BadInput("'older_than' must be a number of seconds, 0 or more")
        if not isinstance(dry_run, bool):
            raise BadInput("'dry_run' must be true or false")
        store = ctx.scheduler.store
        assert isinstance(store, Store)
        result = await run_in_threadpool(
            collect,
            datastore,
            lambda: gc_facts(store),
            ctx.scheduler.outputs_removed,
            ctx.scheduler.clock(),
            float(older_than),
            dry_run=dry_run,
        )
        return json_response(result.to_dict())

    v = p.API_PREFIX
    return [
        Route(f"{v}/data", data_list, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_get, methods=["GET"]),
        Route(f"{v}/data/{{path:path}}", data_put, methods=["PUT"]),
        Route(f"{v}/data/{{path:path}}", data_delete, methods=["DELETE"]),
        Route(f"{v}/gc", gc, methods=["POST"]),
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
