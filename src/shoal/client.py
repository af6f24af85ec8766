"""The command line's client of a boss's HTTP API."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from shoal import protocol as p
from shoal.bundle import pack_folder
from shoal.exceptions import BadInput, BossError, BossUnreachable, NotFound, Unauthorized
from shoal.spec import RunSpec
from shoal.statedir import StateDir

__all__ = ["BossClient"]


class BossClient:
    """Calls a boss; turns its errors into :mod:`shoal.exceptions`."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url + p.API_PREFIX,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    @classmethod
    def find(cls, boss: str | None, token: str | None, state: StateDir) -> BossClient:
        """The boss from ``--boss``, ``SHOAL_BOSS`` or the state folder, in that order."""
        url = boss or os.environ.get("SHOAL_BOSS")
        token = token or os.environ.get("SHOAL_TOKEN")
        if not url or not token:
            info = state.live_boss()
            if info is None:
                if url:
                    raise BadInput(
                        f"no token for the boss at {url}: pass --token or set SHOAL_TOKEN"
                    )
                raise BossUnreachable(
                    f"no boss is running for {state.root}: start one with 'shoal boss', "
                    "or pass --boss URL (or set SHOAL_BOSS)"
                )
            url = url or str(info["url"])
            token = token or str(info["token"])
        return cls(url, token)

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise BossUnreachable(f"cannot reach the boss at {self.url}: {e}") from e
        if resp.status_code >= 400:
            try:
                message = str(resp.json().get("error", resp.text))
            except ValueError:
                message = resp.text
            if resp.status_code == 401:
                raise Unauthorized(f"the boss at {self.url} refused the token: {message}")
            if resp.status_code == 404:
                raise NotFound(message)
            if resp.status_code == 400:
                raise BadInput(message)
            raise BossError(f"the boss at {self.url} answered {resp.status_code}: {message}")
        return resp

    def get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params={k: v for k, v in params.items() if v is not None}).json()

    def post(self, path: str, body: Any = None) -> Any:
        return self._request("POST", path, json=body).json()

    # -- runs ------------------------------------------------------------

    def submit(self, spec: RunSpec) -> int:
        """Upload the run's bundle if the boss lacks it, then submit the run; its id."""
        digest = None
        if spec.bundle is not None:
            digest, archive = pack_folder(spec.bundle)
            try:
                path = p.bundle_path(digest)
                try:
                    self.http.head(f"/data/{path}").raise_for_status()
                except httpx.HTTPStatusError:
                    with archive.open("rb") as f:
                        self._request("PUT", f"/data/{path}", content=_chunks(f))
                except httpx.TransportError as e:
                    raise BossUnreachable(f"cannot reach the boss at {self.url}: {e}") from e
            finally:
                archive.unlink(missing_ok=True)
        body = {"spec": spec.to_dict(), "bundle": digest, "source": spec.source}
        return int(self.post("/runs", body)["run"])

    def run(self, ref: str | int | None) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/runs/{ref or 'latest'}")
        return result

    def runs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/runs")
        return result

    def tasks(self, ref: str | int | None, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        params = [("state", s) for s in states or ()]
        resp = self._request("GET", f"/runs/{ref or 'latest'}/tasks", params=params)
        result: list[dict[str, Any]] = resp.json()
        return result

    def task(self, ref: str | int | None, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/runs/{ref or 'latest'}/tasks/{name}")
        return result

    def log(self, ref: str | int | None, name: str, attempt: int | None = None) -> str:
        params = {"attempt": attempt} if attempt is not None else {}
        return self._request("GET", f"/runs/{ref or 'latest'}/tasks/{name}/log", params=params).text

    def results(self, ref: str | int | None) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/runs/{ref or 'latest'}/results")
        return result

    def cancel(self, ref: str | int) -> int:
        return int(self.post(f"/runs/{ref}/cancel")["cancelled"])

    def retry(self, ref: str | int) -> int:
        return int(self.post(f"/runs/{ref}/retry")["retried"])

    def workers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/workers")
        return result

    def events(self, ref: str | int | None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/events", run=ref)
        return result

    def download(self, path: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.http.stream("GET", f"/data/{path}") as resp:
                if resp.status_code == 404:
                    raise NotFound(f"no file '{path}' in the datastore")
                resp.raise_for_status()
                with dest.open("wb") as f:
                    for chunk in resp.iter_bytes():
                        f.write(chunk)
        except httpx.TransportError as e:
            raise BossUnreachable(f"cannot reach the boss at {self.url}: {e}") from e


def _chunks(f: Any, size: int = 256 * 1024) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


class OfflineClient:
    """Reads a state folder's database when no boss runs there.

    After ``shoal run`` ends, ``shoal status``, ``tasks``, ``logs`` and
    ``results`` still answer from what the run left behind.
    """

    def __init__(self, state: StateDir) -> None:
        from shoal.boss.datastore import LocalDatastore
        from shoal.scheduler import Scheduler
        from shoal.store import Store

        self.url = str(state.root)
        self.store = Store(state.db_path)
        self.scheduler = Scheduler(self.store)
        self.datastore = LocalDatastore(state.data)

    def close(self) -> None:
        self.store.close()

    def _id(self, ref: str | int | None) -> int:
        return self.scheduler.resolve_run(None if ref in (None, "latest") else ref)

    def run(self, ref: str | int | None) -> dict[str, Any]:
        return self.scheduler.run_view(self._id(ref))

    def runs(self) -> list[dict[str, Any]]:
        return self.scheduler.runs_view()

    def tasks(self, ref: str | int | None, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return self.scheduler.tasks_view(self._id(ref), states or None)

    def task(self, ref: str | int | None, name: str) -> dict[str, Any]:
        return self.scheduler.task_view(self._id(ref), name)

    def log(self, ref: str | int | None, name: str, attempt: int | None = None) -> str:
        attempts = self.task(ref, name)["attempt_list"]
        if attempt is not None:
            attempts = [a for a in attempts if a["number"] == attempt]
        if not attempts or not attempts[-1]["log"] or not self.datastore.exists(attempts[-1]["log"]):
            return ""
        return self.datastore.open_path(attempts[-1]["log"]).read_text(errors="replace")

    def results(self, ref: str | int | None) -> dict[str, Any]:
        return self.scheduler.results(self._id(ref))

    def workers(self) -> list[dict[str, Any]]:
        return self.scheduler.workers_view()

    def events(self, ref: str | int | None) -> list[dict[str, Any]]:
        return self.scheduler.events_view(self._id(ref))

    def cancel(self, ref: str | int) -> int:
        raise BossUnreachable(f"no boss is running for {self.url}: nothing to cancel")

    def retry(self, ref: str | int) -> int:
        raise BossUnreachable(
            f"no boss is running for {self.url}: run the task file again with 'shoal run', "
            "or start 'shoal boss' and retry"
        )
