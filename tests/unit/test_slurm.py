"""The slurm provider without a cluster: its job script, its reading of Slurm's states,
its pool fields, and what it hands sbatch (a stand-in sbatch on PATH records it)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from shoal.exceptions import BadInput, SpecError
from shoal.launch import providers
from shoal.launch.contract import BossAccess, Machine, Pool, Site
from shoal.launch.slurm import SlurmProvider, Squeued, job_script, machine_state
from shoal.security import CertAuthority
from shoal.spec import pools as pool_files

TOKEN = "f00dfeedcafe0123456789abcdef0123456789abcdef01"


def _pool(**fields: object) -> Pool:
    return Pool(name="hpc", provider="slurm", count=2, labels={"big": True}, fields=fields)


def _script(tmp_path: Path, pool: Pool) -> str:
    site = Site(tmp_path / "state", launcher="up")
    m = SlurmProvider(site).plan(pool, 1)[0]
    return job_script(
        pool,
        m,
        site=site,
        boss_url="http://10.0.0.1:8750",
        pyz=tmp_path / "state" / "agent" / "shoal-agent-x.pyz",
        token_file=tmp_path / "state" / "slurm" / "hpc-1.token",
    )


def test_the_job_script_says_what_the_pool_asks_and_is_valid_bash(tmp_path: Path) -> None:
    pool = _pool(
        partition="compute",
        account="proj42",
        walltime=90.0,
        cpus=8,
        memory="16G",
        sbatch=["--qos=long", "#SBATCH --constraint=avx2"],
        python="/opt/py/bin/python3",
    )
    script = _script(tmp_path, pool)
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    assert directives == [
        "#SBATCH --job-name=shoal-hpc-1",
        f"#SBATCH --comment=shoal-boss={Site(tmp_path / 'state').boss_tag()},"
        "shoal-pool=hpc,shoal-machine=hpc-1,shoal-owner=up",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks=1",
        "#SBATCH --no-requeue",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=16G",
        "#SBATCH --time=2",  # Slurm counts whole minutes
        "#SBATCH --partition=compute",
        "#SBATCH --account=proj42",
        "#SBATCH --qos=long",
        "#SBATCH --constraint=avx2",
    ]
    # The agent: named for its machine, slots from the job's CPUs, told its end.
    assert "--name=hpc-1" in script and '--slots="${SLURM_CPUS_ON_NODE:-1}"' in script
    assert "--boss=http://10.0.0.1:8750" in script and "--label=big=true" in script
    assert "end=$(( $(date +%s) + 90 ))" in script and '"--end-at=$end"' in script
    assert "python=/opt/py/bin/python3" in script
    assert "--token-file=/dev/stdin" in script
    checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_a_pool_that_gives_slots_and_no_walltime_says_so(tmp_path: Path) -> None:
    pool = Pool(name="hpc", provider="slurm", count=1, slots=3, fields={})
    script = _script(tmp_path, pool)
    assert "--slots=3" in script and "--time" not in script
    assert "end=$(( $(date +%s)" not in script  # only Slurm's own end time, if it has one


def test_an_sbatch_entry_that_is_not_an_option_is_refused_in_one_line_before_sbatch(
    tmp_path: Path,
) -> None:
    pool = _pool(sbatch=["qos=long"])
    site = Site(tmp_path)
    boss = BossAccess(url="http://127.0.0.1:1", token=lambda: TOKEN)
    with pytest.raises(BadInput) as refused:
        SlurmProvider(site).up(pool, 1, boss)
    assert str(refused.value) == (
        "pool hpc: 'sbatch' entry 'qos=long' is not an sbatch option: "
        "write each as on sbatch's command line, e.g. --qos=long"
    )
    assert not (site.root / "slurm").exists()  # no token written, nothing submitted


def _fake_slurm(folder: Path) -> Path:
    """sbatch and squeue stand-ins that record what they were given and answer as Slurm does."""
    folder.mkdir()
    record = folder / "record"
    sbatch = folder / "sbatch"
    sbatch.write_text(
        "#!/bin/sh\n"
        f'echo "ARGS $*" >> {record}\n'
        f"env >> {record}\n"
        f'for a; do [ -f "$a" ] && cat "$a" >> {record}; done\n'
        'echo "42;cluster"\n'
    )
    squeue = folder / "squeue"
    squeue.write_text("#!/bin/sh\nexit 0\n")
    for tool in (sbatch, squeue):
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return record


def test_sbatch_is_given_no_token_and_the_token_waits_in_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    # A user's own credential variables are not passed on to the job either.
    monkeypatch.setenv("SHOAL_TOKEN", TOKEN)
    site = Site(tmp_path / "state")
    noted: list[Machine] = []
    boss = BossAccess(url="http://127.0.0.1:1", token=lambda: TOKEN, note=noted.append)
    (m,) = SlurmProvider(site).up(_pool(), 1, boss)
    assert m.state == "starting" and m.provider_id == "42"
    assert [n.provider_id for n in noted] == ["42"]  # recorded as soon as sbatch answered
    said = record.read_text()
    assert "ARGS --parsable" in said and "#SBATCH --job-name=shoal-hpc-1" in said
    assert TOKEN not in said  # not on its command line, in its environment or in the script
    token_file = site.root.resolve() / "slurm" / "hpc-1.token"
    assert token_file.read_text().strip() == TOKEN
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("job", "exit_code", "taken_down", "state", "detail"),
    [
        (Squeued("7", "PENDING", "Priority", "", {}), None, False, "starting", "job 7 waits in Slurm's queue (Priority)"),
        (Squeued("7", "RUNNING", "None", "node12", {}), None, False, "starting", "job 7 on node12"),
        (Squeued("7", "COMPLETED", "None", "node12", {}), 0, False, "stopped", "its last words"),
        (None, 3, False, "stopped", "its last words"),  # gone from squeue, its exit written
        (Squeued("7", "FAILED", "NonZeroExitCode", "n", {}), 2, False, "stopped", "its last words"),
        (Squeued("7", "CANCELLED", "None", "n", {}), None, False, "preempted", "Slurm ended job 7: CANCELLED"),
        (Squeued("7", "CANCELLED", "None", "n", {}), 0, False, "preempted", "Slurm ended job 7: CANCELLED"),
        (Squeued("7", "TIMEOUT", "TimeLimit", "n", {}), None, False, "preempted", "Slurm ended job 7: TIMEOUT (TimeLimit)"),
        (Squeued("7", "NODE_FAIL", "None", "n", {}), None, False, "preempted", "Slurm ended job 7: NODE_FAIL"),
        (Squeued("7", "PREEMPTED", "None", "n", {}), None, False, "preempted", "Slurm ended job 7: PREEMPTED"),
        (None, None, False, "preempted", "job 7 left Slurm's queue before its worker ended"),
        (Squeued("7", "CANCELLED", "None", "n", {}), None, True, "stopped", "taken down"),
    ],
)  # fmt: skip
def test_slurm_job_states_say_how_the_machine_is(
    job: Squeued | None, exit_code: int | None, taken_down: bool, state: str, detail: str
) -> None:
    m = Machine(name="hpc-1", pool="hpc", provider="slurm", provider_id="7", state="starting")
    seen = machine_state(m, job, exit_code=exit_code, taken_down=taken_down, log="its last words")
    assert (seen.state, seen.detail) == (state, detail)
    if state == "stopped" and not taken_down:
        assert seen.exit_code == exit_code


def test_a_slurm_pool_file_takes_durations_and_is_rented(tmp_path: Path) -> None:
    parsed = pool_files.parse_text(
        "pools:\n  - name: hpc\n    provider: slurm\n    min: 0\n    max: 50\n"
        "    walltime: 4h\n    boot_timeout: 30m\n    cpus: 32\n    sbatch: ['--qos=long']\n"
    )
    (pool,) = parsed.pools
    assert pool.fields["walltime"] == 4 * 3600.0 and pool.fields["boot_timeout"] == 1800.0
    assert pool.idle_stop == 600.0  # a job holds an allocation: stopped when idle
    assert providers.schema("slurm").rented
    assert SlurmProvider(Site(tmp_path)).plan(pool, 1)[0].slots == 32


def test_a_bad_walltime_is_one_line_naming_the_file_line_and_pool() -> None:
    with pytest.raises(SpecError) as bad:
        pool_files.parse_text(
            "pools:\n  - name: hpc\n    provider: slurm\n    count: 1\n    walltime: soon\n",
            path="pools.yaml",
        )
    assert str(bad.value) == (
        "pools.yaml:5: pool 'hpc': 'walltime' must be a duration, e.g. 90s, 30m, 4h "
        "(or seconds) (how long a job may run, e.g. 4h (default: the partition's limit))"
    )


def test_ssh_reaches_the_nodes_the_jobs_run_on_as_the_pool_says(tmp_path: Path) -> None:
    pool = _pool(ssh_user="alice", ssh_options=["-J", "login.example.org"], python="python3.12")
    running = Machine(name="hpc-1", pool="hpc", provider="slurm", address="node17", slots=4)
    queued = Machine(name="hpc-2", pool="hpc", provider="slurm")  # no node yet
    (host,) = SlurmProvider(Site(tmp_path)).ssh_hosts(pool, [running, queued])
    assert (host.name, host.destination, host.slots) == ("hpc-1", "alice@node17", 4)
    assert host.ssh_options == ("-J", "login.example.org") and host.python == "python3.12"


def test_a_job_for_a_boss_over_https_gets_a_certificate_of_its_own_revoked_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    site = Site(tmp_path / "state")
    certs = site.root.resolve() / "certs"
    ca = CertAuthority(certs)
    ca.init()
    provider = SlurmProvider(site)
    # Over plain HTTP, none.
    (m,) = provider.up(_pool(), 1, BossAccess(url="http://127.0.0.1:1", token=lambda: TOKEN))
    assert "--cert=" not in record.read_text() and ca.current("hpc-1") is None
    provider.down([m], drain=False)
    record.unlink()
    boss = BossAccess(url="https://127.0.0.1:1", token=lambda: TOKEN)
    (m,) = provider.up(_pool(), 1, boss)
    assert m.state == "starting", m
    issued = ca.current("hpc-1")
    assert issued is not None and issued.kind == "client"
    said = record.read_text()
    # Paths in the script; no key's content, and the CA's key not even named.
    for option in (f"--ca={certs}/ca.crt", f"--cert={certs}/hpc-1.crt", f"--key={certs}/hpc-1.key"):
        assert option in said, said
    assert ca.key_path("hpc-1").read_text() not in said and "ca.key" not in said
    assert stat.S_IMODE(ca.key_path("hpc-1").stat().st_mode) == 0o600
    # Taken down: its certificate is revoked (the revocation list names it), its files gone.
    provider.down([m], drain=False)
    assert ca.current("hpc-1") is None and not ca.key_path("hpc-1").exists()
    crl = x509.load_pem_x509_crl(ca.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
    # The next job of that machine gets a new one.
    provider.up(_pool(), 1, boss)
    again = ca.current("hpc-1")
    assert again is not None and again.serial != issued.serial
