"""An SFTP datastore's host is known by its key, as ssh knows it.

Each test starts an sshd of its own on a loopback port (``tests.datastores``)
and runs shoal as a user would, with ``HOME`` a folder of the test's own so
the user's known hosts are the test's. A host whose key is not in the known
hosts, or whose key is not the one they give (another machine on its
address), is refused in one line (exit 2) that shows the key's fingerprint and
says how to add it; nothing is read or written on it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from shoal.datastore.location import storage_options
from shoal.exceptions import BadInput
from tests.conftest import shoal
from tests.datastores import SftpHost, known_hosts_line, sftp_host


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 2, proc
    err = proc.stderr
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def _fingerprint(public_key: Path) -> str:
    """``ssh-ed25519 SHA256:...``: the key's type and fingerprint, as ssh-keygen shows them."""
    shown = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public_key)], capture_output=True, text=True, check=True
    ).stdout.split()
    kind = public_key.read_text().split()[0]
    return f"{kind} {shown[1]}"


def _data_options(host: SftpHost, **more: str) -> list[str]:
    """``--data-option`` pairs for ``host``: its user key, but not its known hosts file."""
    options = {k: v for k, v in host.options().items() if k != "known_hosts"}
    options.update(more)
    return [arg for key, value in options.items() for arg in ("--data-option", f"{key}={value}")]


def _home(tmp_path: Path, host: SftpHost) -> Path:
    """A home whose ~/.ssh holds the key ``host`` takes (as ssh finds it), and no known hosts."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_ed25519"
    key.write_bytes(host.key.read_bytes())
    key.chmod(0o600)
    return home


def test_an_unknown_host_key_is_refused_until_the_user_adds_it_as_told(tmp_path: Path) -> None:
    with sftp_host(tmp_path / "host") as host:
        url = host.url()
        env = {"HOME": str(_home(tmp_path, host))}
        proc = shoal("data", "ls", "--data", url, cwd=tmp_path, env=env)
        err = _one_line_error(
            proc,
            f"127.0.0.1 port {host.port}",
            _fingerprint(tmp_path / "host" / "sshd" / "host_key.pub"),
            "known_hosts=FILE",
        )
        assert not any(host.home.iterdir()), "nothing is made on a host not known"
        # The line's own command adds the key to the user's known hosts; then shoal gets in.
        command = re.search(r"`(ssh-keyscan [^`]*)`", err)
        assert command is not None, err
        assert command.group(1) == f"ssh-keyscan -p {host.port} 127.0.0.1 >> ~/.ssh/known_hosts"
        subprocess.run(
            command.group(1), shell=True, env={**os.environ, **env}, check=True, capture_output=True
        )
        local = tmp_path / "a.txt"
        local.write_text("alpha\n")
        added = shoal("data", "add", str(local), "--data", url, cwd=tmp_path, env=env)
        assert added.returncode == 0, added
        listed = shoal("data", "ls", "--data", url, cwd=tmp_path, env=env)
        assert listed.returncode == 0 and "a.txt" in listed.stdout, listed


def test_another_host_on_a_known_hosts_address_is_refused_at_the_boss_start(
    tmp_path: Path,
) -> None:
    with sftp_host(tmp_path / "first") as first:
        known_hosts, port = first.known_hosts, first.port
        first_key = _fingerprint(tmp_path / "first" / "sshd" / "host_key.pub")
    # The first host is gone; another answers on its address with a key of its own.
    with sftp_host(tmp_path / "second", port=port) as second:
        options = _data_options(second, known_hosts=str(known_hosts))
        proc = shoal(
            "boss", "--listen", "127.0.0.1:0", "--data", second.url(), *options,
            cwd=tmp_path, timeout=60, env={"HOME": str(tmp_path)},
        )  # fmt: skip
        _one_line_error(
            proc,
            f"127.0.0.1 port {port} has changed its key",
            first_key,
            _fingerprint(tmp_path / "second" / "sshd" / "host_key.pub"),
            f"ssh-keyscan -p {port} 127.0.0.1 >> {known_hosts}",
        )
        assert not any(second.home.iterdir())


def test_a_known_hosts_entry_with_another_key_is_refused(tmp_path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
        check=True,
    )
    with sftp_host(tmp_path / "host") as host:
        home = _home(tmp_path, host)
        (home / ".ssh" / "known_hosts").write_text(
            known_hosts_line("127.0.0.1", host.port, tmp_path / "other.pub")
        )
        proc = shoal("data", "ls", "--data", host.url(), cwd=tmp_path, env={"HOME": str(home)})
        _one_line_error(
            proc,
            "has changed its key",
            _fingerprint(tmp_path / "other.pub"),
            _fingerprint(tmp_path / "host" / "sshd" / "host_key.pub"),
            f"ssh-keygen -R '[127.0.0.1]:{host.port}' -f ~/.ssh/known_hosts",
        )
        assert not any(host.home.iterdir())


def test_a_known_hosts_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with sftp_host(tmp_path / "host") as host:
        missing = tmp_path / "no-such-known-hosts"
        proc = shoal(
            "boss", "--listen", "127.0.0.1:0", "--data", host.url(),
            *_data_options(host, known_hosts=str(missing)),
            cwd=tmp_path, timeout=60, env={"HOME": str(tmp_path)},
        )  # fmt: skip
        _one_line_error(proc, f"known_hosts={missing}: cannot be read")


def test_no_host_key_policy_can_be_given() -> None:
    for policy in ("auto_add", "warning"):
        try:
            storage_options("sftp://me@127.0.0.1/data", {"host_key_policy": policy})
        except BadInput as e:
            assert "known_hosts" in str(e) and "ssh-keyscan" in str(e)
        else:
            raise AssertionError(f"host_key_policy={policy} was taken")


def test_shoal_data_and_gc_take_the_known_hosts_file_the_refusal_names(tmp_path: Path) -> None:
    with sftp_host(tmp_path / "host") as host:
        url = host.url()
        env = {"HOME": str(_home(tmp_path, host))}
        known = tmp_path / "known_hosts"
        known.write_text(
            known_hosts_line("127.0.0.1", host.port, tmp_path / "host" / "sshd" / "host_key.pub")
        )
        given = ["--data", url, "--data-option", f"known_hosts={known}"]
        local = tmp_path / "a.txt"
        local.write_text("alpha\n")
        added = shoal("data", "add", str(local), "sets/a.txt", *given, cwd=tmp_path, env=env)
        assert added.returncode == 0, added.stderr
        listed = shoal("data", "ls", "--json", *given, cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert "sets/a.txt" in listed.stdout
        # The options go with a URL: alone they are a mistake.
        alone = shoal("data", "ls", "--data-option", f"known_hosts={known}", cwd=tmp_path, env=env)
        _one_line_error(alone, "--data-option needs --data")
