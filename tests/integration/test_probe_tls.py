"""Holes found by probing mutual TLS: a revoked certificate's connection already open."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.boss.server import Boss
from shoal.boss.tokens import WORKER
from shoal.security import CertAuthority
from tests.conftest import shoal
from tests.integration.test_certs import ca, kept, mtls_boss

__all__ = ["ca", "mtls_boss"]  # the fixtures, used here


def test_a_sync_held_open_ends_when_its_certificate_is_revoked(
    mtls_boss: Boss, ca: CertAuthority, tmp_path: Path
) -> None:
    """README: a revoked certificate is refused at once, connections already open included."""
    ca.add("w1", client=True)
    files = kept(ca, "w1", tmp_path / "w1")
    context = ssl.create_default_context(cafile=files.ca)
    assert files.cert and files.key
    context.load_cert_chain(files.cert, files.key)
    parts = urlsplit(mtls_boss.url)
    conn = http.client.HTTPSConnection(
        parts.hostname or "", parts.port, context=context, timeout=60
    )

    def call(path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())

    pool = mtls_boss.tokens.issue("pool", WORKER)
    status, reg = call("/v1/workers", pool, {"name": "w1", "host": "h", "slots": 1})
    assert status == 200
    answer: dict[str, Any] = {}

    def held() -> None:
        body = {"worker_id": reg["worker_id"], "free_slots": 1, "wait": 20}
        try:
            answer["sync"] = call("/v1/sync", reg["token"], body)
        except (OSError, http.client.HTTPException) as e:
            answer["sync"] = (0, {"error": str(e)})

    waiting = threading.Thread(target=held)
    waiting.start()
    time.sleep(1.5)  # the sync is held open, waiting for work
    proc = shoal("certs", "revoke", "w1", "--state", str(ca.folder.parent), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    time.sleep(1.5)
    from shoal.spec import spec_from_dict

    spec = {"name": "later", "tasks": [{"name": "t", "run": "true", "env": {"KEY": "s3cret"}}]}
    run = mtls_boss.submit(spec_from_dict(spec, path="t.yaml"))
    waiting.join(60)
    conn.close()
    status, got = answer["sync"]
    handed = got.get("assignments") if status == 200 else []
    assert not handed, f"a worker whose certificate was revoked was handed {handed}"
    assert [t["state"] for t in mtls_boss.scheduler.tasks_view(run)] == ["ready"]
