"""Running one attempt: workspace, inputs, commands, outputs, log, result.

Standard library only. Each phase's commands run in one shell (``bash -e``
where bash exists, else ``sh -e``) in the attempt's own process group, so a
timeout or a cancel kills everything the task started. A phase that is a
single simple command (no quoting, redirection, variables or globs) is
executed directly, as make does: the same result without a shell's start-up.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from shoal import protocol as p
from shoal.agent.bundles import BundleCache, SetupFailed
from shoal.agent.client import AgentClient, drop_credentials
from shoal.agent.logcap import DEFAULT_LOG_CAP, CappedLog
from shoal.exceptions import ShoalError

_SHELL_CHARS = frozenset("|&;<>()$`\\\"'*?[]#~=%{}!\n\t")
_SHELL_WORDS = frozenset(
    [
        "alias",
        "bg",
        "break",
        "cd",
        "command",
        "continue",
        "eval",
        "exec",
        "exit",
        "export",
        "fg",
        "jobs",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "source",
        "trap",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
        ".",
        ":",
    ]
)
_which_cache: Dict[str, Optional[str]] = {}
_SHELL = shutil.which("bash") or shutil.which("sh") or "/bin/sh"

KILL_GRACE = 2.0
# While a command runs, its log is sent to the boss this often (if it grew),
# so `shoal logs -f` and the dashboard can follow it.
LOG_PUSH_SECONDS = 2.0
LOG_PUSH_LIMIT = 8 * 1024 * 1024
CLEANUP_TIMEOUT = 300.0


def _which(word: str) -> Optional[str]:
    if word not in _which_cache:
        _which_cache[word] = shutil.which(word)
    return _which_cache[word]


def command_argv(commands: List[str]) -> List[str]:
    """The argv that runs these commands in order, stopping at the first failure."""
    if len(commands) == 1 and not (_SHELL_CHARS & set(commands[0])):
        words = commands[0].split()
        if words and words[0] not in _SHELL_WORDS and "/" not in words[0]:
            exe = _which(words[0])
            if exe is not None:
                return [exe, *words[1:]]
    return [_SHELL, "-e", "-c", "\n".join(commands)]


def parse_result(text: str) -> Any:
    """A result from text: the JSON value it holds, else the text itself."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return stripped


class OutputRefused(ShoalError):
    """An output of the task leads out of its workspace (a link to /etc/passwd, say)."""


def real_output(path: str, ws: str, roots: List[str]) -> str:
    """The real path of an output file, if it lies under one of ``roots``; else OutputRefused.

    A link that stays inside is fine; one that leads out would upload a file
    of the worker's host that the task has no business publishing.
    """
    real = os.path.realpath(path)
    if any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
        return real
    name = os.path.relpath(path, ws)
    if name == ".." or name.startswith(".." + os.sep):
        name = path
    if os.path.islink(path):
        raise OutputRefused(f"output '{name}' is a link to '{real}', outside the workspace")
    if real != os.path.abspath(path):
        raise OutputRefused(
            f"output '{name}' leads through a link to '{real}', outside the workspace"
        )
    raise OutputRefused(f"output '{name}' is outside the workspace")


class Attempt:
    """One attempt running on this worker; another thread may cancel it."""

    def __init__(self, assignment: p.Assignment) -> None:
        self.a = assignment
        self.cancelled: Optional[str] = None  # p.CANCELLED or p.INTERRUPTED
        # Why, in words, when the outcome alone would mislead (a stop order is no cancel).
        self.cancel_cause: Optional[str] = None
        # The kernel's count of OOM kills when its command began: a SIGKILL
        # while it grew was most likely the OOM killer's. Read once the
        # command started (see Runner._phase), while it runs on another core,
        # not on the way of every start.
        self.oom_kills: Optional[int] = None
        self._proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
        self._lock = threading.Lock()

    def cancel(self, outcome: str = p.CANCELLED, cause: Optional[str] = None) -> None:
        with self._lock:
            if self.cancelled is None:
                self.cancelled = outcome
                self.cancel_cause = cause
            proc = self._proc
        if proc is not None:
            _kill_group(proc, signal.SIGTERM)


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Runner:
    """Runs attempts for one worker: the parts that stay the same between them."""

    def __init__(
        self, client: AgentClient, workdir: str, worker_name: str, log_cap: int = DEFAULT_LOG_CAP
    ) -> None:
        self.client = client
        # The most an attempt's log keeps: its head and its tail (see logcap).
        self.log_cap = log_cap
        self.workdir = os.path.abspath(workdir)
        self.worker_name = worker_name
        # The environment every task starts from: this process's, read once
        # (decoding os.environ at every task cost more than a no-op command),
        # and its bytes, which is what a command is handed.
        self._base_env = dict(os.environ)
        # The worker dropped them already; an agent embedded in another
        # program (a test, the Python API) may not have.
        drop_credentials(self._base_env)
        self._base_env_bytes = {os.fsencode(k): os.fsencode(v) for k, v in self._base_env.items()}
        self.bundles = BundleCache(os.path.join(self.workdir, "bundles"), client, _SHELL)
        # Why a bundle's setup failed here, once it has: the worker then stops.
        self.setup_failed: Optional[str] = None
        # Empty workspaces are kept for the next attempt: making and removing
        # a folder costs more than a no-op task on a journaling file system.
        self._free: List[str] = []
        self._free_lock = threading.Lock()
        self._made = 0
        ws_parent = _ensure(os.path.join(self.workdir, "ws"))
        # A worker killed outright (SIGKILL, a host that lost power) left its
        # workspaces behind: they go now, while nothing of theirs runs.
        sweep_workspaces(ws_parent)
        self._ws_root = tempfile.mkdtemp(prefix="ws-", dir=ws_parent)
        with open(os.path.join(self._ws_root, OWNER_FILE), "w") as f:
            f.write(_process_mark(os.getpid()) or "")

    def _take_workspace(self) -> str:
        with self._free_lock:
            if self._free:
                return self._free.pop()
            self._made += 1
            path = os.path.join(self._ws_root, str(self._made))
        os.makedirs(path)
        return path

    def _return_workspace(self, ws: str) -> None:
        try:
            with os.scandir(ws) as it:
                leftovers = [e.path for e in it]
            for path in leftovers:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
        except OSError:
            shutil.rmtree(ws, ignore_errors=True)
            return
        with self._free_lock:
            self._free.append(ws)

    def close(self) -> None:
        """Remove this runner's workspaces."""
        shutil.rmtree(self._ws_root, ignore_errors=True)

    def run(self, attempt: Attempt) -> p.Report:
        a = attempt.a
        started = time.time()
        deadline = started + a.timeout if a.timeout else None
        ws = self._take_workspace()
        log_file = ws + ".log"
        result_file = ws + ".result"
        env = dict(self._base_env)
        env.update(a.env)
        env.update(
            SHOAL_RUN=a.run,
            SHOAL_RUN_ID=str(a.run_id),
            SHOAL_TASK=a.task,
            SHOAL_ATTEMPT=str(a.number),
            SHOAL_WORKER=self.worker_name,
            SHOAL_RESULT=result_file,
            SHOAL_WORKSPACE=ws,
        )
        with CappedLog(log_file, self.log_cap) as log:
            try:
                outcome, exit_code, cause, stdout_tail, outputs = self._stage_and_run(
                    attempt, ws, env, log, deadline
                )
            finally:
                if a.cleanup:
                    cleanup_deadline = time.time() + CLEANUP_TIMEOUT
                    code, why, _ = self._phase(attempt, a.cleanup, ws, env, log, cleanup_deadline)
                    if code != 0:
                        log.write(f"shoal: cleanup failed ({why or code})\n".encode())
                self._return_workspace(ws)
        if attempt.cancelled is not None and outcome != p.SUCCEEDED:
            outcome = attempt.cancelled
            cause = attempt.cancel_cause or attempt.cancelled
        result, result_error = self._result(result_file, stdout_tail)
        if result_error and outcome == p.SUCCEEDED:
            outcome, cause = p.FAILED, result_error
        report = p.Report(
            attempt_id=a.attempt_id,
            outcome=outcome,
            run_id=a.run_id,
            task=a.task,
            exit_code=exit_code,
            cause=cause if outcome != p.SUCCEEDED else None,
            result=result,
            started=started,
            ended=time.time(),
            outputs=outputs,
        )
        self._attach_log(report, a, log_file)
        return report

    def _stage_and_run(
        self, attempt: Attempt, ws: str, env: Dict[str, str], log: Any, deadline: Optional[float]
    ) -> Tuple[str, Optional[int], Optional[str], bytes, List[str]]:
        """Bundle and inputs in, then download, run, upload and the outputs out."""
        a = attempt.a
        try:
            if a.bundle:
                folder = self.bundles.ensure(a.bundle, a.setup, env)
                env["SHOAL_BUNDLE"] = folder
                for entry in os.listdir(folder):
                    if not entry.startswith(".shoal-setup"):
                        os.symlink(os.path.join(folder, entry), os.path.join(ws, entry))
            for f in a.fetch:
                self.client.download(f.path, os.path.join(ws, f.dest))
        except SetupFailed as e:
            # The host cannot run this bundle, not the task its command: the
            # task runs elsewhere and this worker takes no more work.
            self.setup_failed = str(e)
            return p.INTERRUPTED, None, f"{e} (on {self.worker_name})", b"", []
        except Exception as e:  # any staging failure fails the attempt, not the worker
            return p.FAILED, None, f"staging inputs failed: {e}", b"", []
        tail = b""
        code, cause, _ = self._phase(attempt, a.download, ws, env, log, deadline)
        if code == 0:
            code, cause, tail = self._phase(attempt, a.run_cmds, ws, env, log, deadline, a.stdin)
        if code == 0:
            code, cause, _ = self._phase(attempt, a.upload, ws, env, log, deadline)
        if code != 0:
            return p.FAILED, code, cause, tail, []
        try:
            outputs = self._upload_outputs(a, ws)
        except OutputRefused as e:
            return p.FAILED, code, str(e), tail, []
        except Exception as e:
            return p.FAILED, code, f"uploading outputs failed: {e}", tail, []
        return p.SUCCEEDED, code, None, tail, outputs

    def _phase(
        self,
        attempt: Attempt,
        commands: List[str],
        ws: str,
        env: Dict[str, str],
        log: Any,
        deadline: Optional[float],
        stdin: Optional[str] = None,
    ) -> Tuple[Optional[int], Optional[str], bytes]:
        """Run one phase's commands; exit code, cause of failure, last stdout bytes."""
        if not commands:
            return 0, None, b""
        if attempt.cancelled is not None:
            return None, attempt.cancelled, b""
        source: Any = subprocess.DEVNULL
        if stdin is not None:
            fd = os.open(ws + ".stdin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as f:
                f.write(stdin)
            source = open(ws + ".stdin", "rb")  # noqa: SIM115 - closed once the command started
        with attempt._lock:
            try:
                proc = subprocess.Popen(
                    command_argv(commands),
                    cwd=ws,
                    env=self._command_env(env),
                    stdin=source,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            except OSError as e:
                return 127, f"cannot start the command: {e}", b""
            finally:
                if stdin is not None:
                    source.close()
            attempt._proc = proc
        if attempt.oom_kills is None:
            attempt.oom_kills = _oom_kills()
        tail = b""
        timed_out = False
        killed_at: Optional[float] = None
        assert proc.stdout is not None and proc.stderr is not None
        out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
        open_fds = [out_fd, err_fd]
        next_push = time.time() + LOG_PUSH_SECONDS
        while open_fds:
            wait = 0.5
            now = time.time()
            if deadline is not None and not timed_out:
                if now >= deadline:
                    timed_out = True
                    killed_at = now
                    _kill_group(proc, signal.SIGTERM)
                else:
                    wait = min(wait, deadline - now)
            if attempt.cancelled is not None and killed_at is None:
                killed_at = now
            if killed_at is not None and now - killed_at > KILL_GRACE:
                _kill_group(proc, signal.SIGKILL)
            # Both streams go to one log, in the order they are read.
            ready, _, _ = select.select(open_fds, [], [], wait)
            for fd in sorted(ready):
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.remove(fd)
                    continue
                log.write(chunk)
                if fd == out_fd:
                    tail = (tail + chunk)[-8192:]
            if not ready and proc.poll() is not None:
                # The command is done but something it started holds a stream.
                _kill_group(proc, signal.SIGKILL)
            if time.time() >= next_push:
                next_push = time.time() + LOG_PUSH_SECONDS
                self._push_log(attempt.a, log)
        code = proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        # Nothing the task started outlives it.
        _kill_group(proc, signal.SIGKILL)
        with attempt._lock:
            attempt._proc = None
        if timed_out:
            return code, f"timeout after {_seconds(attempt.a.timeout or 0)}", tail
        if attempt.cancelled is not None:
            return code, attempt.cancelled, tail
        if code != 0:
            cause = _exit_cause(code)
            before = attempt.oom_kills
            if code == -signal.SIGKILL and before is not None and _oom_kills() > before:
                cause += " (the kernel's out-of-memory killer)"
            return code, cause, tail
        return 0, None, tail

    def _command_env(self, env: Dict[str, str]) -> Dict[bytes, bytes]:
        """``env`` as a command is handed it: what it shares with the base is encoded already."""
        base = self._base_env
        out = dict(self._base_env_bytes)
        for k, v in env.items():
            if base.get(k) is not v:  # the base's own value object: encoded already
                out[os.fsencode(k)] = os.fsencode(v)
        if len(out) != len(env):  # a variable of the base was taken out
            return {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
        return out

    def _push_log(self, a: p.Assignment, log: CappedLog) -> None:
        """Send the log so far to the boss (best effort: the final log always goes).

        Past half the cap the log's head stops growing, so it is sent once:
        the tail joins it when the attempt ends.
        """
        if self.client is None:
            return
        size = log.size
        if size == log.pushed or size > LOG_PUSH_LIMIT:
            return
        try:
            self.client.upload_log(a.attempt_id, log.path, patient=False)
            log.pushed = size
        except Exception:
            pass

    def _upload_outputs(self, a: p.Assignment, ws: str) -> List[str]:
        # Where an output may really be: the workspace, and the bundle whose
        # files are linked into it. Every output is checked before any is sent.
        if not a.outputs:
            return []
        roots = [os.path.realpath(ws)]
        if a.bundle:
            roots.append(os.path.realpath(os.path.join(self.bundles.root, a.bundle)))
        found: Dict[str, str] = {}  # name in the datastore -> the real file
        for pattern in a.outputs:
            hits = sorted(glob.glob(os.path.join(ws, pattern), recursive=True))
            hits = [h for h in hits if os.path.isfile(h)]
            if not hits and not glob.has_magic(pattern):
                raise RuntimeError(f"output '{pattern}' was not written by the task")
            for h in hits:
                rel = os.path.relpath(h, ws).replace(os.sep, "/")
                if rel not in found:
                    found[rel] = real_output(h, ws, roots)
        for rel, real in found.items():
            # The real file, not the path: a link swapped after the check is not followed.
            self.client.upload_output(a.attempt_id, rel, real)
        return list(found)

    def _result(self, result_file: str, stdout_tail: bytes) -> Tuple[Any, Optional[str]]:
        if os.path.exists(result_file):
            try:
                with open(result_file, encoding="utf-8") as f:
                    text = f.read()
            finally:
                os.unlink(result_file)
            if text.strip():
                try:
                    return json.loads(text), None
                except ValueError as e:
                    return None, f"$SHOAL_RESULT does not hold JSON: {e}"
        lines = [ln for ln in stdout_tail.decode("utf-8", "replace").splitlines() if ln.strip()]
        return (parse_result(lines[-1]) if lines else None), None

    def _attach_log(self, report: p.Report, a: p.Assignment, log_file: str) -> None:
        size = os.path.getsize(log_file)
        if 0 < size <= p.INLINE_LOG_LIMIT:
            with open(log_file, "rb") as f:
                report.log = f.read().decode("utf-8", "replace")
        elif size > p.INLINE_LOG_LIMIT:
            try:
                self.client.upload_log(a.attempt_id, log_file)
                report.log_uploaded = True
            except Exception:
                with open(log_file, "rb") as f:
                    f.seek(size - p.INLINE_LOG_LIMIT)
                    report.log = "[log cut: upload failed]\n" + f.read().decode("utf-8", "replace")


def _oom_kills() -> int:
    """How many processes the kernel's OOM killer has killed (0 where not told).

    Read at every attempt: one read of the whole file and a search, not a
    loop over its lines.
    """
    try:
        fd = os.open("/proc/vmstat", os.O_RDONLY)
        try:
            data = os.read(fd, 65536)
        finally:
            os.close(fd)
        at = data.find(b"\noom_kill ")
        if at >= 0:
            return int(data[at + 10 : data.index(b"\n", at + 1)])
    except (OSError, ValueError):
        pass
    return 0


OWNER_FILE = ".owner"  # in a worker's workspace folder: its process, as _process_mark says


def _process_mark(pid: int) -> Optional[str]:
    """A process as ``HOST PID START``: its start time tells it from a later one of its PID.

    The host, as a work folder may be shared (a cluster's home on NFS):
    another host's processes are none of this one's business.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (in parentheses) may hold spaces: count fields after it.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return f"{socket.gethostname()} {pid} {fields[19].decode()}"


def sweep_workspaces(parent: str) -> List[str]:
    """Remove the workspace folders of this host's workers that are gone; those removed.

    A folder whose owner is unknown (no ``.owner`` yet: being made), on
    another host, or still running is kept.
    """
    removed = []
    host = socket.gethostname()
    for entry in os.listdir(parent):
        folder = os.path.join(parent, entry)
        try:
            with open(os.path.join(folder, OWNER_FILE)) as f:
                mark = f.read().split()
        except OSError:
            continue
        if len(mark) != 3 or mark[0] != host or not mark[1].isdigit():
            continue
        if _process_mark(int(mark[1])) != " ".join(mark):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _ensure(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def _exit_cause(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


def _seconds(value: float) -> str:
    return f"{value:g}s"
