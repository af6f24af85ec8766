"""A Docker lab for end-to-end tests: a dockerd of the test's own, and an image built here.

``docker_lab(root)`` (a context manager, like ``cloud_lab``) starts ``dockerd``
by hand with a data root, an exec root, a PID file and a socket of its own,
``--bridge=none --iptables=false``: it sets up no network of this machine
(no bridge, no firewall rule). Containers run with ``--network host``; the
Vagrant tests add a network of the lab's (:meth:`DockerLab.bridge`). At the
end every container is removed, then dockerd is stopped by its PID (and the
containerd it started, by the PID it wrote).

No image can be pulled here, so the lab builds one: ``debootstrap
--variant=minbase --include=python3,openssh-server`` of Debian bookworm from
the mirror apt uses (read from ``/etc/apt/sources.list*``), packed as a tar
and ``docker import``-ed. The tar is cached between runs under the temporary
folder (``$TMPDIR/shoal-test-images/``, keyed by :data:`IMAGE_VERSION`),
since debootstrap takes minutes; importing it takes seconds.

Shoal's processes reach the lab's engine with ``lab.env()``: ``DOCKER_HOST``
and a ``PATH`` whose first ``docker`` is the one :func:`docker_cli` found
(Debian's ``/usr/bin/docker`` where it is installed, the one ``.ci/run``
installs). Needs root, docker.io (dockerd, containerd, runc, the docker CLI)
and debootstrap: mark the test ``needs_docker``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.needs import needs

__all__ = [
    "BOX_IMAGE",
    "IMAGE",
    "IMAGE_VERSION",
    "DockerLab",
    "box_image",
    "debian_mirror",
    "docker_cli",
    "docker_lab",
    "image_tar",
    "needs_docker",
]

# What the cached tar holds; change it when the image's recipe changes.
IMAGE_VERSION = "bookworm-python3-sshd-sudo-2"
IMAGE = f"shoal-lab/bookworm:{IMAGE_VERSION.rsplit('-', 1)[1]}"
# The lab image as a Vagrant box is (Vagrant's docker provider runs it).
BOX_IMAGE = "shoal-lab/vagrant-box:1"
# Vagrant's well-known insecure key, which a box accepts for 'vagrant' until
# Vagrant puts a key of its own in its place at the first 'vagrant up'.
INSECURE_KEY = "keys/vagrant.pub"
SUITE = "bookworm"
PACKAGES = ("python3", "openssh-server", "sudo")
# debootstrap fetches some 60 MB and unpacks them: minutes on a slow link.
BUILD_TIMEOUT = 1800
START_TIMEOUT = 60


def docker_cli() -> str | None:
    """The docker CLI the tests use: Debian's (docker.io's ``/usr/bin/docker``), else PATH's."""
    debian = Path("/usr/bin/docker")
    return str(debian) if debian.exists() else shutil.which("docker")


needs_docker = needs(
    "root, dockerd and the docker CLI (docker.io) and debootstrap",
    os.geteuid() == 0
    and shutil.which("dockerd") is not None
    and docker_cli() is not None
    and shutil.which("debootstrap") is not None,
)


# -- the image ------------------------------------------------------------------


def _codename() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return SUITE
    found = re.search(r"^VERSION_CODENAME=\"?([a-z]+)", text, re.MULTILINE)
    return found.group(1) if found else SUITE


def _deb_sources() -> Iterator[tuple[str, list[str]]]:
    """(URI, suites) of every ``deb`` source apt reads, one-line and deb822 alike."""
    apt = Path("/etc/apt")
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1], [words[2]]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith((" ", "#")):
                        fields[key.strip().lower()] = value.strip()
                if "deb" in fields.get("types", "").split() and fields.get("enabled") != "no":
                    for uri in fields.get("uris", "").split():
                        yield uri, fields.get("suites", "").split()


def debian_mirror() -> str:
    """The Debian mirror apt uses: the URI of the source of this system's release itself."""
    release = _codename()
    for uri, suites in _deb_sources():
        if release in suites:
            return uri.rstrip("/")
    raise AssertionError(
        f"no apt source for the Debian release {release!r} in /etc/apt/sources.list*: "
        "debootstrap needs a Debian mirror"
    )


def image_tar() -> Path:
    """The lab image's root as a tar, built once (debootstrap) and cached under the temp folder.

    One builder at a time: others wait on a lock, then find it made.
    """
    cache = Path(tempfile.gettempdir()) / "shoal-test-images"
    cache.mkdir(mode=0o700, exist_ok=True)
    tar = cache / f"{IMAGE_VERSION}.tar"
    with (cache / f"{IMAGE_VERSION}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tar.exists():
            _build(tar)
    return tar


def _build(tar: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=f"{IMAGE_VERSION}-", dir=tar.parent))
    root = work / "root"
    log = work / "debootstrap.log"
    try:
        with log.open("wb") as out:
            done = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    SUITE,
                    str(root),
                    debian_mirror(),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=BUILD_TIMEOUT,
            )
        if done.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise AssertionError("debootstrap failed:\n" + "\n".join(tail))
        # sshd wants its privilege separation folder, which an init script makes elsewhere.
        (root / "run" / "sshd").mkdir(parents=True, exist_ok=True)
        for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            deb.unlink()
        part = tar.with_name(tar.name + ".part")
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(part), "."],
            check=True,
            capture_output=True,
        )
        os.replace(part, tar)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _insecure_key() -> Path:
    """Vagrant's insecure public key, where Debian's vagrant (or HashiCorp's) installs it."""
    for root in (Path("/usr/share/rubygems-integration/all/gems"), Path("/opt/vagrant/embedded")):
        for found in sorted(root.glob(f"**/vagrant-*/{INSECURE_KEY}")):
            return found
    raise AssertionError(f"Vagrant's {INSECURE_KEY} is not where Vagrant installs it")


def box_image(lab: DockerLab, folder: Path) -> str:
    """The lab image as a Vagrant box is: a 'vagrant' user with sudo and the insecure key.

    Built on the lab's engine (``docker build`` from the lab image: nothing
    pulled) as :data:`BOX_IMAGE`, which it returns; ``folder`` holds its context.
    """
    folder.mkdir(parents=True)
    shutil.copy(_insecure_key(), folder / "vagrant.pub")
    (folder / "Dockerfile").write_text(
        f"FROM {lab.image}\n"
        "RUN useradd --create-home --shell /bin/bash vagrant"
        " && echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/vagrant"
        " && mkdir -m 700 /home/vagrant/.ssh\n"
        "COPY vagrant.pub /home/vagrant/.ssh/authorized_keys\n"
        "RUN chown -R vagrant:vagrant /home/vagrant/.ssh"
        " && chmod 600 /home/vagrant/.ssh/authorized_keys\n"
    )
    # The classic builder: it needs nothing but the engine (no BuildKit, no registry).
    cli = docker_cli()
    assert cli is not None
    built = subprocess.run(
        [cli, "--host", lab.host, "build", "--tag", BOX_IMAGE, str(folder)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return BOX_IMAGE


# -- the engine -----------------------------------------------------------------


class DockerLab:
    """A dockerd of the lab's own, with the lab image imported.

    ``host``: the engine's ``DOCKER_HOST`` (``unix://…``); ``image``: the
    lab image's name; ``pid``: dockerd's process; ``root``: the lab's folder.
    """

    def __init__(self, root: Path, run: Path, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.run_dir = run  # short: Unix socket paths are at most 108 bytes
        self.proc = proc
        self.pid = proc.pid
        self.host = f"unix://{run / 'docker.sock'}"
        self.image = IMAGE
        self.bin = root / "bin"  # the docker CLI the lab's env() puts first on PATH
        self.networks: list[str] = []

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI on the lab's engine (checked unless told not to)."""
        cli = docker_cli()
        assert cli is not None
        done = subprocess.run(
            [cli, "--host", self.host, *args],
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def env(self) -> dict[str, str]:
        """What a shoal process under test adds to its environment to use the lab's engine."""
        return {
            "DOCKER_HOST": self.host,
            "PATH": os.pathsep.join([str(self.bin), os.environ.get("PATH", "")]),
        }

    def containers(self, label: str | None = None) -> list[dict[str, str]]:
        """Every container of the engine (or those with ``label``, ``key=value``), running or not."""
        fmt = '{{.ID}}\t{{.Names}}\t{{.State}}\t{{.Label "shoal-machine"}}\t{{.Label "shoal-boss"}}'
        args = ["ps", "--all", "--no-trunc", "--format", fmt]
        if label is not None:
            args += ["--filter", f"label={label}"]
        out = []
        for line in self.docker(*args).stdout.splitlines():
            cid, name, state, machine, boss = [*line.split("\t"), "", "", ""][:5]
            out.append({"id": cid, "name": name, "state": state, "machine": machine, "boss": boss})
        return out

    def bridge(self) -> str:
        """A network of the lab's own: a bridge on a /24 of 10.243.0.0/16 no route here covers.

        No firewall rule and no NAT (dockerd runs --iptables=false): a
        container on it is reached from this machine only, and ports it
        publishes on 127.0.0.1 are forwarded by docker-proxy. Removed at the end.
        """
        first = os.getpid() % 256
        for k in range(256):
            third = (first + k) % 256
            cidr = f"10.243.{third}.0/24"
            covering = subprocess.run(
                ["ip", "route", "show", "match", cidr], capture_output=True, text=True
            ).stdout.splitlines()
            if any(line and not line.startswith("default") for line in covering):
                continue
            name = f"shoal-lab-{third}"
            made = self.docker(
                "network",
                "create",
                "--driver=bridge",
                f"--subnet={cidr}",
                f"--opt=com.docker.network.bridge.name=shlab{third}",
                name,
                check=False,
            )
            if made.returncode == 0:
                self.networks.append(name)
                return name
        raise AssertionError("no /24 of 10.243.0.0/16 is free for a lab network")

    def _clear(self) -> None:
        """Remove every container and network the lab's engine has."""
        ids = self.docker("ps", "--all", "--quiet", check=False).stdout.split()
        if ids:
            self.docker("rm", "--force", *ids, check=False, timeout=300)
        for name in self.networks:
            self.docker("network", "rm", name, check=False)


def _start_dockerd(root: Path, run: Path) -> subprocess.Popen[bytes]:
    log = root / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "dockerd",
                f"--data-root={root / 'data'}",
                f"--exec-root={run / 'exec'}",
                f"--pidfile={run / 'dockerd.pid'}",
                f"--host=unix://{run / 'docker.sock'}",
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    cli = docker_cli()
    assert cli is not None
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").splitlines()[-10:]
            raise AssertionError("dockerd exited:\n" + "\n".join(tail))
        done = subprocess.run(
            [cli, "--host", f"unix://{run / 'docker.sock'}", "version"],
            capture_output=True,
            timeout=30,
        )
        if done.returncode == 0:
            return proc
        if time.monotonic() > deadline:
            _stop_dockerd(proc, run)
            raise AssertionError(f"dockerd did not answer within {START_TIMEOUT} s (see {log})")
        time.sleep(0.2)


def _stop_dockerd(proc: subprocess.Popen[bytes], run: Path) -> None:
    """dockerd by its PID, then the containerd it started, by the PID it wrote."""
    containerd = run / "exec" / "containerd" / "containerd.pid"
    pid = int(containerd.read_text()) if containerd.exists() else None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if pid is not None and _exists(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _exists(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount_under(folder: Path) -> None:
    """Unmount what dockerd left mounted below ``folder`` (its netns/default), deepest first."""
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True)


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@contextlib.contextmanager
def docker_lab(root: Path) -> Iterator[DockerLab]:
    """A Docker lab in the folder ``root``, everything of it stopped on leaving.

    A test module makes its fixture of it::

        @pytest.fixture
        def lab(tmp_path: Path) -> Iterator[DockerLab]:
            with docker_lab(tmp_path / "docker") as made:
                yield made
    """
    tar = image_tar()
    root.mkdir(parents=True, exist_ok=True)
    (root / "bin").mkdir()
    cli = docker_cli()
    assert cli is not None
    (root / "bin" / "docker").symlink_to(cli)
    run = Path(tempfile.mkdtemp(prefix="shd-", dir="/tmp"))
    lab: DockerLab | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = _start_dockerd(root, run)
        lab = DockerLab(root, run, proc)
        lab.docker("import", str(tar), IMAGE, timeout=600)
        yield lab
    finally:
        try:
            if lab is not None:
                lab._clear()
        finally:
            if proc is not None:
                _stop_dockerd(proc, run)
            _unmount_under(run)
            _unmount_under(root)
            shutil.rmtree(run, ignore_errors=True)
