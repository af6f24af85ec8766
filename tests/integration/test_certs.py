"""``shoal certs`` and a boss under mutual TLS: who it serves, who it refuses."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shoal.agent.client import TlsFiles
from shoal.boss.listen import real_address
from shoal.boss.server import Boss
from shoal.client import BossClient
from shoal.exceptions import BadInput, BossUnreachable
from shoal.security import CertAuthority, ServerTls
from tests.conftest import shoal

TOKEN = "test-token"


@pytest.fixture
def ca(tmp_path: Path) -> CertAuthority:
    authority = CertAuthority(tmp_path / "state" / "certs")
    assert authority.init()
    return authority


@pytest.fixture
def mtls_boss(tmp_path: Path, ca: CertAuthority) -> Iterator[Boss]:
    ca.add("boss", hosts=["127.0.0.1", "localhost"])
    server = Boss(
        db=tmp_path / "shoal.db",
        data=tmp_path / "data",
        token=TOKEN,
        tls=ServerTls(ca, mtls=True),
    )
    server.start()
    yield server
    server.stop()


def kept(ca: CertAuthority, name: str, where: Path) -> TlsFiles:
    """A certificate's files copied out, as a worker's machine would hold them."""
    where.mkdir(parents=True, exist_ok=True)
    for path in (ca.cert_path(name), ca.key_path(name), ca.ca_cert):
        shutil.copy2(path, where / path.name)
    return TlsFiles(str(where / "ca.crt"), str(where / f"{name}.crt"), str(where / f"{name}.key"))


def runs(url: str, tls: TlsFiles) -> list[object]:
    with BossClient(url, TOKEN, tls=tls) as client:
        return client.runs()


def refusal(url: str, tls: TlsFiles) -> str:
    with pytest.raises(BossUnreachable) as caught:
        runs(url, tls)
    return str(caught.value)


def test_the_boss_serves_https_at_an_https_url(mtls_boss: Boss, ca: CertAuthority) -> None:
    assert mtls_boss.url.startswith("https://127.0.0.1:")
    assert runs(mtls_boss.url, TlsFiles(str(ca.ca_cert), *_files(ca, "cli"))) == []


def _files(ca: CertAuthority, name: str) -> tuple[str, str]:
    return str(ca.cert_path(name)), str(ca.key_path(name))


def test_mtls_refuses_a_client_without_a_certificate(mtls_boss: Boss, ca: CertAuthority) -> None:
    line = refusal(mtls_boss.url, TlsFiles(str(ca.ca_cert)))
    assert mtls_boss.url in line and "presents none" in line
    assert "\n" not in line


def test_mtls_refuses_a_certificate_of_another_ca(
    mtls_boss: Boss, ca: CertAuthority, tmp_path: Path
) -> None:
    other = CertAuthority(tmp_path / "other" / "certs")
    other.init()
    line = refusal(mtls_boss.url, TlsFiles(str(ca.ca_cert), *_files(other, "cli")))
    assert "refuses this client's certificate" in line


def test_mtls_refuses_an_expired_certificate(
    mtls_boss: Boss, ca: CertAuthority, tmp_path: Path
) -> None:
    ca.add("old", client=True, days=1, now=time.time() - 3 * 86400)
    line = refusal(mtls_boss.url, TlsFiles(str(ca.ca_cert), *_files(ca, "old")))
    assert "refuses this client's certificate" in line


def test_a_certificate_revoked_while_the_boss_runs_is_refused_at_once(
    mtls_boss: Boss, ca: CertAuthority, tmp_path: Path
) -> None:
    ca.add("w1", client=True)
    ca.add("w2", client=True)
    w1 = kept(ca, "w1", tmp_path / "w1")
    w2 = kept(ca, "w2", tmp_path / "w2")
    with BossClient(mtls_boss.url, TOKEN, tls=w1) as open_client:
        assert open_client.runs() == []  # a connection kept alive from before
        proc = shoal("certs", "revoke", "w1", "--state", str(ca.folder.parent), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        # A new connection is refused at its handshake, ...
        assert "refuses this client's certificate" in refusal(mtls_boss.url, w1)
        # ... and the one kept open is closed before its next request is read.
        with pytest.raises(BossUnreachable):
            open_client.runs()
    # Others go on being served, by the same boss.
    assert runs(mtls_boss.url, w2) == []


def test_a_good_certificate_may_submit_a_run(
    mtls_boss: Boss, ca: CertAuthority, tmp_path: Path
) -> None:
    from shoal.spec import parse_data

    tls = kept(ca, "cli", tmp_path / "me")
    with BossClient(mtls_boss.url, TOKEN, tls=tls) as client:
        run = client.submit(parse_data({"name": "r", "tasks": [{"name": "a", "run": "true"}]}))
        assert [t["name"] for t in client.tasks(run)] == ["a"]


def test_the_client_refuses_a_boss_its_ca_did_not_sign(
    mtls_boss: Boss, ca: CertAuthority, tmp_path: Path
) -> None:
    other = CertAuthority(tmp_path / "other" / "certs")
    other.init()
    line = refusal(mtls_boss.url, TlsFiles(str(other.ca_cert), *_files(ca, "cli")))
    assert f"the boss at {mtls_boss.url} has a certificate that does not verify" in line


def test_a_key_others_may_read_is_refused(mtls_boss: Boss, ca: CertAuthority) -> None:
    os.chmod(ca.key_path("cli"), 0o644)
    with pytest.raises(BadInput, match=r"can be read by others .*chmod 600"):
        runs(mtls_boss.url, TlsFiles(str(ca.ca_cert), *_files(ca, "cli")))


def test_ca_files_are_private(ca: CertAuthority) -> None:
    assert ca.folder.stat().st_mode & 0o777 == 0o700
    for path in (ca.ca_key, ca.key_path("cli")):
        assert path.stat().st_mode & 0o777 == 0o600


def test_a_wildcard_is_never_the_advertised_address() -> None:
    for wildcard in ("0.0.0.0", "::"):
        address = real_address(wildcard)
        assert address not in ("0.0.0.0", "::", "")


# -- the command ---------------------------------------------------------


def test_certs_add_before_init_and_twice_and_bad_host_are_one_line_errors(
    tmp_path: Path,
) -> None:
    proc = shoal("certs", "add", "w1", "--client", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"shoal: no certificate authority in .shoal{os.sep}certs: run 'shoal certs init' first\n"
    )
    assert shoal("certs", "init", cwd=tmp_path).returncode == 0
    assert shoal("certs", "add", "w1", "--client", cwd=tmp_path).returncode == 0
    again = shoal("certs", "add", "w1", "--client", cwd=tmp_path)
    assert again.returncode == 2
    assert "'w1' was issued already" in again.stderr and again.stderr.count("\n") == 1
    bad = shoal("certs", "add", "s1", "--host", "not a host", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.startswith("shoal: bad --host 'not a host'") and bad.stderr.count("\n") == 1


def test_certs_ls_shows_expiry_and_revocation_and_warns_before_expiry(tmp_path: Path) -> None:
    assert shoal("certs", "init", cwd=tmp_path).returncode == 0
    assert shoal("certs", "add", "w1", "--client", cwd=tmp_path).returncode == 0
    assert (
        shoal("certs", "add", "soon", "--host", "10.1.2.3", "--days", "10", cwd=tmp_path).returncode
        == 0
    )
    assert shoal("certs", "revoke", "w1", cwd=tmp_path).returncode == 0
    proc = shoal("certs", "ls", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "kind", "serial", "expires", "state", "hosts"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith("warning")}
    assert "revoked" in rows["w1"]
    assert "9d left" in rows["soon"] and "10.1.2.3" in rows["soon"]
    # Aligned: every row's expiry starts in the same column.
    # (Found by its date: a serial may hold "20" too.)
    starts = set()
    for line in rows.values():
        found = re.search(r"\b\d{4}-\d\d-\d\d", line)
        assert found, line
        starts.add(found.start())
    assert len(starts) == 1
    warnings = [line for line in lines if line.startswith("warning")]
    assert len(warnings) == 1 and "'soon' expires in 9 days" in warnings[0]
    revoked_again = shoal("certs", "revoke", "w1", cwd=tmp_path)
    assert revoked_again.returncode == 2 and "no certificate named 'w1'" in revoked_again.stderr
