#!/usr/bin/env python3
"""Workers on the engines users already run: time from ``shoal up`` to workers registered.

For each engine asked for (``--engine``), in one invocation, each round
brings up N machines (``--machines``, default 3) with ``shoal up --pool``
next to a running ``shoal boss`` and times it from the command's start to
the N-th worker's ``registered`` time in the boss's database; then ``shoal
down``. Baselines measured in the same run:

* ``local``: the same through a ``local`` pool of N workers (processes on
  this machine): shoal's own share, with no engine at all;
* ``docker``: the Docker lab of the tests (``tests/dockerlab.py``: a dockerd
  of its own, an image built with debootstrap, ``network: host``); baseline
  ``docker run -d`` of N containers and a ``docker exec`` of ``python3`` in
  each, straight on the engine (what the engine itself takes);
* ``vagrant``: Vagrant's docker provider on that dockerd, as the tests run it
  (a box image with sshd and a ``vagrant`` user, a bridge of the lab's own);
  baseline ``vagrant up`` of the same Vagrantfile (``shoal.launch.vagrant.
  vagrantfile``) until Vagrant says the machines are ready, then
  ``vagrant destroy -f``: what Vagrant itself takes before shoal starts agents
  over ssh;
* ``slurm``: ``bench/slurm.py`` (its own script: a one-node Slurm lab).

Needs root, docker.io and debootstrap (and vagrant for ``vagrant``).

    sudo python bench/engines.py [--engine docker|vagrant|all] [--machines 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from driver import Driver, row, say, wait_registered

Figures = dict[str, list[float]]
WIDTH = 24  # of a figure's name in the table


class Bench(Driver):
    """The shoal commands of one engine's rounds, each round in a folder of its own."""

    def __init__(self, work: Path, env: dict[str, str], machines: int) -> None:
        super().__init__(work, env, timeout=900)
        self.machines = machines

    def up_to_registered(self, pool: str) -> float:
        """Seconds from ``shoal up --pool`` (this pool file) to N workers registered; then down."""
        cwd = self.folder("up")
        (cwd / "pools.yaml").write_text(pool)
        with self.boss(cwd):
            start = time.time()
            self.shoal("up", "--pool", "pools.yaml", cwd=cwd)
            took = wait_registered(cwd, self.machines, timeout=600)[-1] - start
            self.shoal("down", cwd=cwd)
        return took


def local_pool(n: int) -> str:
    return f"pools:\n  - name: cpu\n    provider: local\n    count: {n}\n    slots: 1\n"


def docker(work: Path, machines: int, repeat: int) -> Figures:
    """Docker containers of the lab's image: ``shoal up`` to registered, and the baselines."""
    from tests.dockerlab import docker_lab

    figures: Figures = {"docker_up": [], "docker_engine_alone": [], "local_up": []}
    with docker_lab(work / "lab") as lab:
        bench = Bench(work, lab.env(), machines)
        pool = (
            "pools:\n  - name: box\n    provider: docker\n"
            f"    count: {machines}\n    slots: 1\n    image: {lab.image}\n    network: host\n"
        )

        def engine_alone() -> float:
            start = time.monotonic()

            def one(i: int) -> None:
                cid = lab.docker(
                    "run", "--detach", "--network=host", "--entrypoint=sleep", lab.image, "600"
                ).stdout.strip()
                lab.docker("exec", cid, "python3", "-c", "pass")

            with ThreadPoolExecutor(machines) as threads:
                list(threads.map(one, range(machines)))
            took = time.monotonic() - start
            ids = lab.docker("ps", "--all", "--quiet").stdout.split()
            lab.docker("rm", "--force", *ids)
            return took

        for i in range(repeat):
            say(f"docker: round {i + 1} of {repeat}")
            figures["docker_up"].append(bench.up_to_registered(pool))
            figures["docker_engine_alone"].append(engine_alone())
            figures["local_up"].append(bench.up_to_registered(local_pool(machines)))
    return figures


def vagrant(work: Path, machines: int, repeat: int) -> Figures:
    """Vagrant's docker provider on the lab's dockerd: ``shoal up`` to registered, and baselines."""
    from shoal.launch.contract import Pool
    from shoal.launch.vagrant import vagrantfile
    from tests.dockerlab import BOX_IMAGE, box_image, docker_lab

    if shutil.which("vagrant") is None:
        sys.exit("the vagrant bench needs vagrant (apt-get install vagrant)")
    figures: Figures = {"vagrant_up": [], "vagrant_alone": [], "local_up": []}
    with docker_lab(work / "lab") as lab:
        box_image(lab, work / "box")
        network = lab.bridge()
        env = {
            **os.environ,
            **lab.env(),
            "VAGRANT_HOME": str(work / "vagrant-home"),
            "VAGRANT_CHECKPOINT_DISABLE": "1",
        }
        bench = Bench(work, env, machines)
        options: dict[str, Any] = {
            "image": BOX_IMAGE,
            "has_ssh": True,
            "cmd": ["/usr/sbin/sshd", "-D", "-e"],
            "create_args": [f"--network={network}"],
        }
        pool = (
            "pools:\n  - name: vm\n    provider: vagrant\n"
            f"    count: {machines}\n    slots: 1\n    vagrant_provider: docker\n"
            f"    provider_options: {json.dumps(options)}\n"
        )

        def alone() -> float:
            folder = bench.folder("vagrant-alone")
            names = [f"vm-{i + 1}" for i in range(machines)]
            made = Pool(
                name="vm",
                provider="vagrant",
                count=machines,
                fields={"vagrant_provider": "docker", "provider_options": options},
            )
            (folder / "Vagrantfile").write_text(vagrantfile(made, names))
            start = time.monotonic()
            up = subprocess.run(
                ["vagrant", "up", "--provider=docker"],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
            )
            took = time.monotonic() - start
            subprocess.run(
                ["vagrant", "destroy", "--force"], cwd=folder, env=env, capture_output=True
            )
            if up.returncode != 0:
                sys.exit(f"vagrant up failed: {up.stdout[-2000:]}{up.stderr[-2000:]}")
            return took

        for i in range(repeat):
            say(f"vagrant: round {i + 1} of {repeat}")
            figures["vagrant_up"].append(bench.up_to_registered(pool))
            figures["vagrant_alone"].append(alone())
            figures["local_up"].append(bench.up_to_registered(local_pool(machines)))
    return figures


ENGINES: dict[str, Callable[[Path, int, int], Figures]] = {"docker": docker, "vagrant": vagrant}
CHOICES = ("docker", "vagrant", "all")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=CHOICES, default="all", help="which (default all)")
    parser.add_argument("--machines", type=int, default=3, help="machines per pool (default 3)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of each; the median is shown (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/engines.py starts a dockerd of its own: run it as root")
    if args.machines < 1 or args.repeat < 1:
        sys.exit("--machines and --repeat take a number of 1 or more")
    wanted = list(ENGINES) if args.engine == "all" else [args.engine]
    missing = [e for e in wanted if e not in ENGINES]
    if missing:
        sys.exit(f"no bench for {', '.join(missing)} in this copy of shoal")
    figures: Figures = {}
    work = Path(tempfile.mkdtemp(prefix="shoal-bench-engines-"))
    try:
        for engine in wanted:
            figures.update(ENGINES[engine](work / engine, args.machines, args.repeat))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.machines} machines, median of {args.repeat} (each round in brackets):")
    for name, values in figures.items():
        print(row(name, values, WIDTH))
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
