"""A cloud lab for end-to-end tests: moto's EC2, with a real machine behind each instance.

``cloud_lab(root)`` (a context manager, like ``ssh_lab``) starts moto in server
mode in a process of its own on a loopback port, and makes in it a VPC and a
subnet (a /24 of 10.241.0.0/16 that no route of this machine covers). Before
moto hands out any address, the subnet is blackholed here: a packet to an
address with no test host is dropped on this machine, never sent out.

A watcher thread polls moto (every 0.15 s). For each instance of the subnet
that is pending or running, it makes a TEST HOST at the instance's private
address (``tests.sshhosts.make_host``: a network namespace with an sshd of
its own, behind a veth pair and a /32 route checked to go over it, more
specific than the blackhole). The host accepts ``lab.key`` for ``root``, and
the public key of the instance's key pair if moto knows it (as EC2 puts it in
``authorized_keys``); it shares this machine's filesystem, with a HOME of its
own. When the instance is stopped or terminated in moto, the host's processes
and sshd are stopped by PID and its namespace taken down: the VM stops. The
instance's user-data is NOT run (``lab.user_data`` shows it).

Shoal's processes reach moto with ``lab.env()``: fake AWS credentials, the
region, and on ``PYTHONPATH`` a ``sitecustomize.py`` that aligns libcloud's
EC2 driver with moto's XML namespace (see ``ALIGNMENT``); it reaches the
keeper that ``shoal up`` starts, since that process inherits the environment.

Everything is stopped at the end, also when the test fails: every host, the
moto process by its PID, the blackhole route. Needs what the ssh hosts do
(mark the test ``tests.sshhosts.needs_ssh_hosts``) and, from the test extra,
moto[server] and boto3.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3

from tests.sshhosts import SshHost, ip, keygen, make_host, stop_host

__all__ = ["ALIGNMENT", "CloudLab", "cloud_lab"]

SRC = str(Path(__file__).resolve().parents[1] / "src")
REGION = "us-east-1"
# moto takes any credentials; these only have to be there, as a user's would.
ACCESS_KEY_ID = "AKIASHOALCLOUDLAB000"
SECRET_ACCESS_KEY = "shoal-cloud-lab-secret-not-a-real-one"
LIVE = ("pending", "running")
POLL = 0.15


# moto answers EC2 calls in the namespace "http://ec2.amazonaws.com/doc/2016-11-15";
# libcloud's EC2 driver looks its elements up under the same with a trailing
# slash, finds none and lists no node. A shoal process under test runs this at
# start (as the sitecustomize on its PYTHONPATH): once libcloud's EC2 driver is
# imported, its NAMESPACE loses the slash. Lazily, so a process that never
# loads libcloud pays nothing for it.
ALIGNMENT = '''"""shoal's cloud lab (tests/cloudlab.py): libcloud's EC2 driver reads moto's answers."""
import importlib.abc
import sys

_EC2 = "libcloud.compute.drivers.ec2"


class _Aligned(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.NAMESPACE = module.NAMESPACE.rstrip("/")


class _AlignEc2(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _EC2:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Aligned(spec.loader)
                return spec
        return None


sys.meta_path.insert(0, _AlignEc2())
'''

# moto in a process of its own (a test may SIGKILL shoal's processes, never
# moto's): it writes the port it got to the file named, then serves until stopped.
_MOTO = """
import os, sys, threading
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
port = server.get_host_and_port()[1]
with open(sys.argv[1] + ".new", "w") as f:
    f.write(str(port))
os.replace(sys.argv[1] + ".new", sys.argv[1])
threading.Event().wait()
"""


class CloudLab:
    """moto's EC2 on a loopback port, with a test host behind each live instance of ``subnet``.

    ``endpoint``/``region``: where moto listens; ``subnet``/``cidr``/``vpc``:
    the lab's subnet; ``image``/``size``: an AMI and an instance type moto
    runs; ``key``: the private key every host accepts for ``root`` (``.pub``
    beside it); ``known_hosts``: a file for ssh's ``UserKnownHostsFile``;
    ``alignment``: the folder holding the ``sitecustomize.py`` of ``env()``;
    ``ec2``: a boto3 EC2 client on moto, for the test's own calls;
    ``moto_pid``: moto's process.
    """

    def __init__(self, root: Path, endpoint: str, moto_pid: int, cidr: str, third: int) -> None:
        self.root = root
        self.endpoint = endpoint
        self.moto_pid = moto_pid
        self.region = REGION
        self.cidr = cidr
        self.size = "t3.micro"
        self.key = root / "id_lab"
        self.known_hosts = root / "known_hosts"
        self.alignment = root / "libcloud-moto"
        self.ec2: Any = boto3.client(
            "ec2",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        self.vpc: str = self.ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        self.subnet: str = self.ec2.create_subnet(VpcId=self.vpc, CidrBlock=cidr)["Subnet"][
            "SubnetId"
        ]
        linux = self.ec2.describe_images(Filters=[{"Name": "name", "Values": ["*ubuntu*"]}])
        images = linux["Images"] or self.ec2.describe_images()["Images"]
        self.image: str = images[0]["ImageId"]
        self._third = third
        self._made = 0  # hosts made so far: each gets names of its own
        self._hosts: dict[str, SshHost] = {}
        self._lock = threading.Lock()  # one of the watcher's rounds, or a kill, at a time
        self._stopping = threading.Event()
        self._error: BaseException | None = None
        self._watcher = threading.Thread(target=self._watch, name="cloud-lab", daemon=True)

    # --- what a test reads

    @property
    def hosts(self) -> dict[str, SshHost]:
        """The hosts running now, by instance id (a copy); a host is listed once sshd listens."""
        self._raise_watcher_error()
        with self._lock:
            return dict(self._hosts)

    def instances(self, states: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The subnet's instances as moto describes them (boto3's dicts), or those in ``states``."""
        wanted = None if states is None else set(states)
        return [
            i for i in self._describe(self.ec2) if wanted is None or i["State"]["Name"] in wanted
        ]

    def user_data(self, instance_id: str) -> str:
        """The user-data the instance was started with (the lab does not run it)."""
        answer = self.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        value = answer.get("UserData", {}).get("Value")
        return base64.b64decode(value).decode() if value else ""

    def wait_hosts(self, n: int, timeout: float = 60) -> dict[str, SshHost]:
        """Wait until exactly ``n`` hosts run (more instances starting, or some ending)."""
        deadline = time.monotonic() + timeout
        while True:
            hosts = self.hosts
            if len(hosts) == n:
                return hosts
            if time.monotonic() > deadline:
                seen = [(i["InstanceId"], i["State"]["Name"]) for i in self.instances()]
                raise AssertionError(
                    f"{len(hosts)} hosts ({sorted(hosts)}) after {timeout}s, not {n}; "
                    f"moto's instances: {seen}"
                )
            time.sleep(0.05)

    def ssh_options(self) -> list[str]:
        """ssh's options to log in as root on a host: the lab's key, its own known_hosts."""
        return [
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "BatchMode=yes",
        ]

    def ssh(
        self, addr: str, *command: str, connect_timeout: int = 10
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` as root on the host at ``addr`` (not checked; stdout/stderr captured)."""
        return subprocess.run(
            [
                "ssh",
                *self.ssh_options(),
                "-o",
                f"ConnectTimeout={connect_timeout}",
                f"root@{addr}",
                *command,
            ],
            capture_output=True,
            text=True,
            timeout=connect_timeout + 60,
        )

    def unused_address(self) -> str:
        """An address of the subnet that moto gives out last: no host there in a test."""
        return f"10.241.{self._third}.254"

    def env(self) -> dict[str, str]:
        """What a shoal process under test adds to its environment to use moto.

        The credentials and region of the lab, and a ``PYTHONPATH`` with the
        alignment (``ALIGNMENT``), shoal's ``src`` and what was there before:
        pass it as ``env=`` to ``tests.conftest.shoal`` or ``Procs.start``. The
        endpoint is not in it: a pool file names it (``lab.endpoint``).
        """
        path = [str(self.alignment), SRC]
        if os.environ.get("PYTHONPATH"):
            path.append(os.environ["PYTHONPATH"])
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "PYTHONPATH": os.pathsep.join(path),
        }

    # --- what a test does behind shoal's back

    def kill(self, instance_id: str) -> None:
        """The VM vanishes: terminated in moto, and its host stopped at once.

        Its link goes down first, so no goodbye (a FIN, a reset) reaches
        anyone: a connection to it just hears nothing more, as from a VM
        that was preempted or pulled.
        """
        with self._lock:
            self.ec2.terminate_instances(InstanceIds=[instance_id])
            host = self._hosts.pop(instance_id, None)
            if host is not None:
                host.link(False)
                stop_host(host)

    # --- the watcher

    def _describe(self, ec2: Any) -> list[dict[str, Any]]:
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "subnet-id", "Values": [self.subnet]}]
        )
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def _watch(self) -> None:
        # A client of its own: the test's may be busy in another thread.
        ec2 = boto3.client(
            "ec2",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
        try:
            while not self._stopping.is_set():
                with self._lock:
                    self._round(self._describe(ec2), ec2)
                self._stopping.wait(POLL)
        except BaseException as e:  # the test hears of it (hosts, wait_hosts, the end)
            self._error = e

    def _round(self, instances: list[dict[str, Any]], ec2: Any) -> None:
        live = {i["InstanceId"]: i for i in instances if i["State"]["Name"] in LIVE}
        # Ended first: moto may give an ended instance's address to a new one.
        for instance_id in [i for i in self._hosts if i not in live]:
            stop_host(self._hosts.pop(instance_id))
        for instance_id, instance in live.items():
            if instance_id not in self._hosts and instance.get("PrivateIpAddress"):
                self._hosts[instance_id] = self._make(instance, ec2)

    def _make(self, instance: dict[str, Any], ec2: Any) -> SshHost:
        more: tuple[str, ...] = ()
        if instance.get("KeyName"):
            pairs = ec2.describe_key_pairs(KeyNames=[instance["KeyName"]], IncludePublicKey=True)
            more = tuple(p["PublicKey"] for p in pairs["KeyPairs"] if p.get("PublicKey"))
        self._made += 1
        tag = f"{self._third}h{self._made}"
        return make_host(
            self.root,
            instance["InstanceId"],
            instance["PrivateIpAddress"],
            self.key,
            more_keys=more,
            # The subnet's .1, its router in EC2 (moto never gives it out), is
            # our end of every host's link.
            local_addr=f"10.241.{self._third}.1",
            ns=f"shoal-cloud{tag}",
            veth=f"scl{tag}a",
            peer=f"scl{tag}b",
        )

    def _raise_watcher_error(self) -> None:
        if self._error is not None:
            raise AssertionError(
                f"the cloud lab's watcher failed: {self._error!r}"
            ) from self._error

    def _start(self) -> None:
        self._watcher.start()

    def _stop(self) -> None:
        self._stopping.set()
        self._watcher.join(60)
        with self._lock:
            while self._hosts:
                stop_host(self._hosts.popitem()[1])


def _claim_subnet() -> tuple[str, int]:
    """A /24 of 10.241.0.0/16, blackholed here: the route is this lab's claim on it.

    Skips one another lab holds (its blackhole is there) or that a route of
    this machine already covers (a real network: never shadow it).
    """
    first = os.getpid() % 256
    for k in range(256):
        third = (first + k) % 256
        cidr = f"10.241.{third}.0/24"
        covering = ip("route", "show", "match", cidr).splitlines()
        if any(line and not line.startswith("default") for line in covering):
            continue
        try:
            ip("route", "add", "blackhole", cidr)
        except subprocess.CalledProcessError:
            continue  # taken meanwhile
        return cidr, third
    raise AssertionError("no /24 of 10.241.0.0/16 is free for a cloud lab")


def start_moto(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server (every API it has) on a free loopback port: its process and its URL."""
    port_file = root / "moto.port"
    with (root / "moto.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MOTO, str(port_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None:
                raise AssertionError(f"moto exited: {(root / 'moto.log').read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("moto did not start within 60s")
            time.sleep(0.05)
    except BaseException:
        stop_process(proc)
        raise
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this lab started (by its PID): SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def cloud_lab(root: Path) -> Iterator[CloudLab]:
    """A cloud lab in the folder ``root``, everything of it stopped on leaving.

    A test module makes its fixture of it::

        @pytest.fixture
        def lab(tmp_path: Path) -> Iterator[CloudLab]:
            with cloud_lab(tmp_path / "cloud") as made:
                yield made
    """
    root.mkdir(parents=True, exist_ok=True)
    keygen(root / "id_lab")
    alignment = root / "libcloud-moto"
    alignment.mkdir()
    (alignment / "sitecustomize.py").write_text(ALIGNMENT)
    cidr, third = _claim_subnet()
    moto: subprocess.Popen[bytes] | None = None
    lab: CloudLab | None = None
    try:
        moto, endpoint = start_moto(root)
        lab = CloudLab(root, endpoint, moto.pid, cidr, third)
        lab._start()
        yield lab
        lab._raise_watcher_error()
    finally:
        try:
            if lab is not None:
                lab._stop()
        finally:
            if moto is not None:
                stop_process(moto)
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("route", "del", "blackhole", cidr)
