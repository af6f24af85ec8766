"""The worker agent: register, then sync in a loop and run attempts.

Standard library only, Python >= 3.11. One thread talks to the boss; each
running attempt has a thread of its own. Finished attempts are reported in the
next sync, which also renews the leases of those still running and asks for as
many new attempts as there is room for. When tasks are short, the agent keeps
a few assignments queued ahead so a slot never waits for a round trip.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from typing import Any, Deque, Dict, List, Optional

from shoal import __version__
from shoal import protocol as p
from shoal.agent.client import (
    AgentClient,
    BossDown,
    BossRefused,
)
from shoal.agent.logcap import DEFAULT_LOG_CAP
from shoal.agent.runner import Attempt, Runner
from shoal.agent.usage import UsageProbe

# Keep assignments queued ahead only while tasks take less than this.
SHORT_TASK = 0.5
# While tasks are short, each slot queues about this much work ahead (one
# task at least, AHEAD_MOST at most): enough that a slot seldom waits on a
# sync, and syncs report many tasks at once; little enough that other
# workers are not left idle while this one holds the work.
AHEAD_SECONDS = 0.1
AHEAD_MOST = 64
# How long a sync may wait for more attempts to finish while work is queued.
BATCH_WAIT = 0.05
# How long an idle worker's sync may wait at the boss for work.
LONG_POLL = 5.0
# Back-off bounds while the boss is unreachable.
BACKOFF_MIN, BACKOFF_MAX = 0.2, 10.0
# An agent started over ssh (--lifeline) stops after this long without its
# boss: its connection most likely died without the host's sshd noticing.
LIFELINE_GIVE_UP = 120.0
# An agent whose time ends (--end-at: a Slurm job's walltime) drains this
# long before the end, or a tenth of its time where that is less; and
# interrupts what still runs (a task without a timeout) halfway through that.
END_MARGIN = 60.0
END_MARGIN_SHARE = 0.1
# A task killed by one of these signals, not by this worker, while this worker
# is being stopped went down with it (its Slurm job cancelled: Slurm signals
# every process of the job; a machine shutting down): it is reported
# interrupted, to run again elsewhere, not failed. The worker's own stop
# signal may arrive a moment after the task's: it is waited for this long.
WENT_DOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL)
WENT_DOWN_GRACE = 1.0
# The cause an attempt ends with when a stop order from the boss ends it.
STOPPED_BY_ORDER = "its worker was stopped (shoal drain --now); it runs again elsewhere"


# How log lines look: "json" for programs, "text" for a person at a terminal.
LOG_FORMATS = ("text", "json")
_log_format = ["json"]


def set_log_format(log_format: str) -> None:
    """Log as ``text`` (``12:03:04 boss unreachable: url=…``) or as JSON lines."""
    _log_format[0] = log_format


def log_event(event: str, **fields: Any) -> None:
    """One log line on stderr: a JSON object with an ``event`` field, or text."""
    now = time.time()
    if _log_format[0] == "text":
        details = ", ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
        when = time.strftime("%H:%M:%S", time.localtime(now))
        line = f"{when} {event.replace('_', ' ')}" + (f": {details}" if details else "")
    else:
        line = json.dumps(dict(event=event, time=round(now, 3), **fields), default=str)
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Agent:
    """A worker: one sync loop, up to ``slots`` attempts at once."""

    def __init__(
        self,
        client: AgentClient,
        *,
        slots: int = 1,
        name: Optional[str] = None,
        labels: Optional[Dict[str, Any]] = None,
        workdir: Optional[str] = None,
        idle_exit: Optional[float] = None,
        drain_timeout: Optional[float] = None,
        quiet: bool = False,
        parent: Optional[int] = None,
        give_up_after: Optional[float] = None,
        log_cap: int = DEFAULT_LOG_CAP,
        end_at: Optional[float] = None,
    ) -> None:
        self.client = client
        self.slots = max(1, slots)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.labels = labels or {}
        self.workdir = workdir or os.path.join(tempfile.gettempdir(), f"shoal-worker-{os.getuid()}")
        self.idle_exit = idle_exit
        self.drain_timeout = drain_timeout
        self.quiet = quiet
        # Local workers of `shoal run` end with it: a worker whose parent is
        # gone would otherwise wait for a boss that will never come back.
        self.parent = parent
        # An agent started over ssh gives up on a boss it has not reached for
        # this long: the connection that started it is most likely gone.
        self.give_up_after = give_up_after
        self._unreachable_since: Optional[float] = None
        self._boss_gone = False
        # When this worker's time ends (epoch seconds), and so when it drains.
        self.end_at = end_at
        self.drain_at: Optional[float] = None
        self.interrupt_at: Optional[float] = None
        if end_at is not None:
            margin = min(END_MARGIN, END_MARGIN_SHARE * max(0.0, end_at - time.time()))
            self.drain_at = end_at - margin
            self.interrupt_at = end_at - margin / 2
        self.runner = Runner(client, self.workdir, self.name, log_cap=log_cap)
        self.usage = UsageProbe()  # what the boss's dashboard shows of this machine
        self.worker_id = 0
        self.heartbeat = 5.0
        # Whether a sync went through since it registered: a token refused
        # after that has ended (register again); before, it never worked.
        self._synced_as_registered = False
        self.cond = threading.Condition()
        self.pending: Deque[p.Assignment] = collections.deque()
        self.running: Dict[int, Attempt] = {}
        self.used = 0
        self.finished: List[p.Report] = []
        self.durations: Deque[float] = collections.deque(maxlen=20)
        self.stopping = 0  # 1: drain, 2: kill what runs
        self.stop_reason = ""  # why this worker stopped by itself
        self.stop_since = 0.0
        # While the sync waits for a batch of reports: how many it waits for
        # (0: it does not wait so); and the slot threads waiting for work.
        self._batch = 0
        self._idle_slots = 0
        self._in_long_poll = False
        self._stop_requested = threading.Event()
        self._closing = False
        self._slot_threads: List[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------

    def log(self, event: str, **fields: Any) -> None:
        if not self.quiet:
            log_event(event, worker=self.name, **fields)

    def request_stop(self) -> None:
        """First call: take no new work, finish what runs. Second: stop it now."""
        self._stop_requested.set()
        with self.cond:
            self.stopping = min(2, self.stopping + 1)
            if self.stopping == 1:
                self.stop_since = time.time()
            self.cond.notify_all()
        if self._in_long_poll:
            # Idle and waiting at the boss: no need to wait for the answer.
            self.client.abort_sync()
        if self.stopping == 2:
            self._interrupt_all()

    def install_signal_handlers(self) -> None:
        """SIGTERM or SIGINT: drain, and interrupt on the second one.

        SIGUSR1 interrupts at once. Two signals sent back to back may reach
        Python's handler as one, so whoever must interrupt sends SIGUSR1.
        """

        def handler(signum: int, frame: Any) -> None:
            self.request_stop()

        def interrupt(signum: int, frame: Any) -> None:
            while self.stopping < 2:
                self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGUSR1, interrupt)

    def _interrupt_all(self) -> None:
        with self.cond:
            attempts = list(self.running.values())
        for attempt in attempts:
            attempt.cancel(p.INTERRUPTED)

    def register(self) -> None:
        reg = p.Registration(
            name=self.name,
            host=socket.gethostname(),
            slots=self.slots,
            labels=self.labels,
            pid=os.getpid(),
            python=platform.python_version(),
            version=__version__,
        )
        delay = BACKOFF_MIN
        while True:
            try:
                answer = self.client.register(reg)
                break
            except BossDown as e:
                if self.stopping or self._given_up():
                    raise
                self.log("boss_unreachable", error=str(e), retry_in=round(delay, 2))
                time.sleep(delay)
                delay = min(BACKOFF_MAX, delay * 2) * random.uniform(0.8, 1.2)
        self.worker_id = answer.worker_id
        self.heartbeat = max(0.5, answer.heartbeat_seconds)
        self._synced_as_registered = False
        self.log("registered", worker_id=self.worker_id, slots=self.slots, boss=self.client.url)

    def run(self) -> int:
        """Work until stopped or idle for ``idle_exit`` seconds; the exit code."""
        # The first line: whoever started us over ssh knows the tunnel held.
        self.log("started", pid=os.getpid(), boss=self.client.url)
        try:
            self.register()
        except BossRefused as e:
            sys.stderr.write(
                f"shoal worker: the boss refused to register this worker: {e.message}\n"
            )
            return p.EXIT_REFUSED
        except BossDown:
            return 130 if self.stopping else 1
        for i in range(self.slots):
            thread = threading.Thread(target=self._slot_loop, name=f"slot-{i + 1}", daemon=True)
            thread.start()
            self._slot_threads.append(thread)
        idle_since = time.time()
        backoff = BACKOFF_MIN
        while True:
            if self.parent is not None and os.getppid() != self.parent and not self.stopping:
                self.log("parent_gone", parent=self.parent)
                self.request_stop()
                self.request_stop()
            with self.cond:
                self._mind_the_end()
                self._start_what_fits()
                busy = bool(self.running or self.pending)
                if busy:
                    idle_since = time.time()
                if self.stopping and not self.running:
                    break
                if (
                    self.stopping == 1
                    and self.drain_timeout is not None
                    and time.time() - self.stop_since > self.drain_timeout
                ):
                    self.stopping = 2
                    self.cond.release()
                    try:
                        self._interrupt_all()
                    finally:
                        self.cond.acquire()
                idle_for = time.time() - idle_since
                if not busy and self.idle_exit is not None and idle_for >= self.idle_exit:
                    self.log("idle_exit", idle_seconds=round(idle_for, 1))
                    break
                room = self._room()
                if self.finished and len(self.pending) >= self.slots and not self.stopping:
                    # Work is queued ahead, so nothing waits on this sync:
                    # let a few more attempts finish and report them together.
                    limit = time.time() + BATCH_WAIT
                    enough = self._batch = max(8 * self.slots, self._ahead() // 2)
                    while len(self.finished) < enough and len(self.pending) >= self.slots:
                        left = limit - time.time()
                        if left <= 0:
                            break
                        self.cond.wait(left)
                    self._batch = 0
                    room = self._room()
                if not self.finished and (room == 0 or busy or self.stopping):
                    # Wait for an attempt to finish (or the heartbeat).
                    self.cond.wait(
                        self._until_the_end(
                            self.heartbeat
                            if room == 0 and not self.stopping
                            else min(self.heartbeat, 0.5)
                        )
                    )
                    self._start_what_fits()
                    room = self._room()
                finished, self.finished = self.finished, []
                running = list(self.running) + [a.attempt_id for a in self.pending]
                wait = 0.0
                if not finished and not busy and room > 0 and not self.stopping:
                    wait = LONG_POLL
                    if self.idle_exit is not None:
                        wait = max(0.0, min(wait, self.idle_exit - idle_for))
                    wait = self._until_the_end(wait)
            req = p.SyncRequest(
                worker_id=self.worker_id,
                finished=finished,
                running=running,
                free_slots=room,
                wait=wait,
                max_seconds=(
                    max(0.0, self.drain_at - time.time()) if self.drain_at is not None else None
                ),
                usage=self.usage.reading(),
            )
            try:
                self._in_long_poll = wait > 0
                try:
                    # A stop asked for once the wait was chosen, before the flag
                    # was up, found nothing to break off: the sync asks itself.
                    resp = self.client.sync(req, self._stop_requested.is_set if wait > 0 else None)
                finally:
                    self._in_long_poll = False
                backoff = BACKOFF_MIN
                self._unreachable_since = None
            except BossDown as e:
                self._requeue(finished)
                if self.stopping and not finished and wait > 0:
                    self.client.drop_connection()
                    continue
                if self._given_up():
                    # What runs lost its lease long ago: stop it, say no goodbye.
                    self._boss_gone = True
                    self.request_stop()
                    self.request_stop()
                    break
                self.log("boss_unreachable", error=str(e), retry_in=round(backoff, 2))
                self._sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2) * random.uniform(0.8, 1.2)
                continue
            except BossRefused as e:
                self._unreachable_since = None  # it answered
                ended = e.status == 401 and self.client.own_token and self._synced_as_registered
                if e.status == 404 or ended:
                    # Unknown, or its own token ended (its launcher said it
                    # was gone): a new worker, with the credential it was given.
                    self._requeue(finished)
                    self.log("reregister", reason=e.message)
                    try:
                        self.register()
                    except BossRefused as again:
                        sys.stderr.write(
                            f"shoal worker: the boss refused to register this worker: "
                            f"{again.message}\n"
                        )
                        return p.EXIT_REFUSED
                    continue
                if e.status == 401:
                    sys.stderr.write(f"shoal worker: the boss refused the token: {e.message}\n")
                    return p.EXIT_REFUSED
                if e.status >= 500:
                    # The boss failed (its database, say) and stored nothing:
                    # report these again.
                    self._requeue(finished)
                self.log("sync_refused", status=e.status, error=e.message)
                self._sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            self._synced_as_registered = True
            self._apply(resp)
        if not self._boss_gone:
            self._farewell()
        with self.cond:
            self._closing = True
            self.cond.notify_all()
        for thread in self._slot_threads:
            thread.join()
        self.runner.close()
        if self._boss_gone:
            return 1
        return p.EXIT_SETUP_FAILED if self.runner.setup_failed is not None else 0

    def _mind_the_end(self) -> None:
        """Near the end of its time (``end_at``), drain; nearer, interrupt (cond held).

        Tasks with a timeout were taken only if they end before the drain
        (``max_seconds``), so only a task without one is still running at
        the interruption: it is reported interrupted and runs again
        elsewhere, rather than being killed halfway when the time is up.
        """
        if self.drain_at is None or self.interrupt_at is None:
            return
        now = time.time()
        if not self.stopping and now >= self.drain_at:
            self.stop_reason = self.stop_reason or "its time ran out (--end-at): it drained"
            self.log("time_up", end_at=self.end_at)
            self.request_stop()
        if self.stopping == 1 and now >= self.interrupt_at:
            # Draining however it began (a SIGTERM too): the end comes all the same.
            self.log("time_up_interrupt", end_at=self.end_at)
            self.stopping = 2
            self.cond.release()
            try:
                self._interrupt_all()
            finally:
                self.cond.acquire()

    def _until_the_end(self, seconds: float) -> float:
        """``seconds``, or less if the drain or the interruption comes sooner."""
        if self.drain_at is None or self.interrupt_at is None:
            return seconds
        now = time.time()
        due = self.interrupt_at if self.stopping else self.drain_at
        return max(0.01, min(seconds, due - now)) if due > now else min(seconds, 0.5)

    def _given_up(self) -> bool:
        """Whether the boss has been out of reach for longer than ``give_up_after``."""
        now = time.time()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if self.give_up_after is None or now - self._unreachable_since < self.give_up_after:
            return False
        sys.stderr.write(
            f"shoal worker: the boss was out of reach for {self.give_up_after:.0f} s; stopping\n"
        )
        sys.stderr.flush()
        return True

    def _sleep(self, seconds: float) -> None:
        """Back off (a stop request ends it early; finishing attempts do not)."""
        self._stop_requested.wait(seconds)

    def _requeue(self, reports: List[p.Report]) -> None:
        with self.cond:
            self.finished[:0] = reports

    def _farewell(self) -> None:
        with self.cond:
            leftover = list(self.pending)
            self.pending.clear()
            finished, self.finished = self.finished, []
        now = time.time()
        for a in leftover:
            finished.append(
                p.Report(
                    attempt_id=a.attempt_id,
                    outcome=p.INTERRUPTED,
                    run_id=a.run_id,
                    task=a.task,
                    cause="worker stopped",
                    started=now,
                    ended=now,
                )
            )
        try:
            if finished:
                self.client.sync(p.SyncRequest(worker_id=self.worker_id, finished=finished))
            self.client.goodbye(self.worker_id, self.stop_reason)
        except (BossDown, BossRefused) as e:
            self.log("farewell_failed", error=str(e))
        self.client.drop_connection()
        self.log("stopped")

    # -- work ------------------------------------------------------------

    def _room(self) -> int:
        """Slots to ask for: free ones, plus a queue ahead while tasks are short."""
        if self.stopping:
            return 0
        queued = sum(a.slots for a in self.pending)
        return max(0, self.slots + self._ahead() - self.used - queued)

    def _ahead(self) -> int:
        """Assignments to keep queued ahead of the free slots (see AHEAD_SECONDS)."""
        if len(self.durations) < 3:
            return 0
        typical = sorted(self.durations)[len(self.durations) // 2]
        if typical >= SHORT_TASK:
            return 0
        per_slot = AHEAD_SECONDS / max(typical, AHEAD_SECONDS / AHEAD_MOST)
        return max(1, int(per_slot)) * self.slots

    def _apply(self, resp: p.SyncResponse) -> None:
        with self.cond:
            for attempt_id in resp.cancel:
                for a in list(self.pending):
                    if a.attempt_id == attempt_id:
                        self.pending.remove(a)
                running = self.running.get(attempt_id)
                if running is None:
                    pass
                elif resp.stop:
                    # A stop order (shoal drain --now) comes with what runs here to end:
                    # nobody cancelled those tasks, they run again elsewhere.
                    running.cancel(p.INTERRUPTED, STOPPED_BY_ORDER)
                else:
                    running.cancel(p.CANCELLED)
            self.pending.extend(resp.assignments)
            self._start_what_fits()
        if resp.stop and not self.stopping:
            # The boss asked (a drain from its dashboard): once is a drain, not an interruption.
            self.stop_reason = self.stop_reason or "the boss asked it to stop"
            what = "stop now" if resp.cancel else "drain"
            log_event("told_to_stop", order=what, worker=self.name)
            self.request_stop()

    def _start_what_fits(self) -> None:
        # Called with self.cond held: wake the slot threads if work is queued.
        if self.pending and not self.stopping:
            self.cond.notify_all()

    def _take(self) -> Optional[Attempt]:
        """The next queued assignment that fits in the free slots (cond held)."""
        if not self.pending or self.stopping:
            return None
        a = self.pending[0]
        if self.used + a.slots > self.slots and self.used > 0:
            return None
        self.pending.popleft()
        attempt = Attempt(a)
        self.running[a.attempt_id] = attempt
        self.used += a.slots
        if self._batch and len(self.pending) < self.slots:
            self.cond.notify_all()  # the queue runs low: the sync waits no more
        return attempt

    def _slot_loop(self) -> None:
        """One slot: take an assignment, run it, report it, again."""
        while True:
            with self.cond:
                attempt = self._take()
                while attempt is None:
                    if self._closing:
                        self.client.drop_connection()  # this slot's, for files
                        return
                    self._idle_slots += 1
                    try:
                        self.cond.wait()
                    finally:
                        self._idle_slots -= 1
                    attempt = self._take()
            self._run_one(attempt)

    def _run_one(self, attempt: Attempt) -> None:
        a = attempt.a
        try:
            report = self.runner.run(attempt)
        except Exception as e:  # a bug here must fail the attempt, not the worker
            now = time.time()
            report = p.Report(
                attempt_id=a.attempt_id,
                outcome=p.FAILED,
                run_id=a.run_id,
                task=a.task,
                cause=f"worker error: {e!r}",
                started=now,
                ended=now,
            )
        if self._went_down_with_us(attempt, report):
            report.outcome = p.INTERRUPTED
            report.cause = f"stopped with its worker ({report.cause})"
        with self.cond:
            self.running.pop(a.attempt_id, None)
            self.used -= a.slots
            self.finished.append(report)
            self.durations.append(report.ended - report.started)
            # A sync waiting for a batch of reports is woken by the one that
            # completes it, not by each: a wake-up a task costs the slots CPU.
            batching = 1 < len(self.finished) < self._batch
            if not batching or self._idle_slots or self.stopping:
                self.cond.notify_all()
        if self.runner.setup_failed is not None and not self.stop_reason:
            self.stop_reason = self.runner.setup_failed
            sys.stderr.write(f"shoal worker: {self.stop_reason}{p.TAKES_NO_MORE}\n")
            sys.stderr.flush()
            self.request_stop()

    def _went_down_with_us(self, attempt: Attempt, report: p.Report) -> bool:
        """Whether a failed attempt was killed by what is stopping this worker."""
        code = report.exit_code
        if report.outcome != p.FAILED or code is None or attempt.cancelled is not None:
            return False
        if (report.cause or "").startswith("timeout"):
            return False  # killed by its own timeout
        signum = -code if code < 0 else code - 128
        if signum not in WENT_DOWN_SIGNALS:
            return False
        return self._stop_requested.wait(WENT_DOWN_GRACE)
