"""A cloud VM's user-data: authorise the pool's key, and power off when no agent runs.

:func:`user_data` makes a POSIX ``sh`` script. How it reaches the VM:

* aws, azure, digitalocean, openstack: as the VM's user-data (Azure: its
  ``customData``); cloud-init runs a ``#!`` script as root at first boot;
* gce: as the ``startup-script`` metadata, which the guest agent runs as root
  at every boot (the script is idempotent: a second run starts no second
  watchdog and adds the key once);
* opennebula: as the context's ``START_SCRIPT_BASE64``, which the one-context
  packages run as root at boot.

It does two things:

1. authorises the public key for ``user`` (creating the user, with no
   password and no sudo, where the image lacks it): clouds that put the key
   on the VM themselves (gce, azure) are not hurt by it, the others need it;
2. starts, detached, a watchdog loop that powers the VM off once the
   heartbeat file :data:`HEARTBEAT` is older than ``idle_stop`` seconds. The
   file is created when the watchdog starts, so a fresh VM gets its full
   ``idle_stop``; a shoal agent touches it (:data:`TOUCH`) when it starts
   and on each of its heartbeats. On EC2 the power-off terminates the VM
   (``InstanceInitiatedShutdownBehavior=terminate``); elsewhere it stops it.

Variables the script reads, so that a test never powers anything off:
``SHOAL_WATCH_DIR`` (default ``/var/lib/shoal``: the heartbeat file
``agent-alive``, the loop's PID in ``watchdog.pid``, the loop itself in
``watchdog.sh``), ``SHOAL_POWEROFF`` (the power-off command, default
``poweroff || shutdown -h now``), ``SHOAL_WATCH_EVERY`` (seconds between
checks, default 60), ``SHOAL_USER_HOME`` (put the key in this home instead of
the user's, and create no user).
"""

from __future__ import annotations

import math
import re

from shoal.exceptions import BadInput

__all__ = ["HEARTBEAT", "TOUCH", "WATCH_DIR", "user_data"]

WATCH_DIR = "${SHOAL_WATCH_DIR:-/var/lib/shoal}"
# The file whose age says how long no agent has run (a shell word: quote it as "...").
HEARTBEAT = f"{WATCH_DIR}/agent-alive"
# What a remote shell runs to say an agent is alive (harmless where no watchdog is).
TOUCH = f'touch "{HEARTBEAT}" 2>/dev/null || true'

_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_KEY = re.compile(r"(ssh-|ecdsa-|sk-)[A-Za-z0-9@._-]+ [A-Za-z0-9+/=]+( [^\r\n]*)?")

# The loop, written to $dir/watchdog.sh and run detached: sh watchdog.sh IDLE EVERY DIR.
# A missing heartbeat file counts as an old one.
_LOOP = """\
idle=$1 every=$2 dir=$3
echo $$ > "$dir/watchdog.pid"
while :; do
    sleep "$every"
    now=$(date +%s)
    last=$(date -r "$dir/agent-alive" +%s 2>/dev/null \\
        || stat -c %Y "$dir/agent-alive" 2>/dev/null || echo 0)
    if [ $((now - last)) -ge "$idle" ]; then
        echo "shoal watchdog: no agent for $((now - last))s, powering off" >&2
        sh -c "${SHOAL_POWEROFF:-poweroff || shutdown -h now}" && exit 0
    fi
done
"""

_SCRIPT = """\
#!/bin/sh
# shoal: authorise the pool's ssh key for {user}; power this VM off once no shoal
# agent has run on it for {idle}s (an agent touches $SHOAL_WATCH_DIR/agent-alive).
user='{user}'
idle={idle}
create_user={create_user}
dir="${{SHOAL_WATCH_DIR:-/var/lib/shoal}}"
every="${{SHOAL_WATCH_EVERY:-{every}}}"
key=$(cat <<'SHOAL_PUBLIC_KEY'
{key}
SHOAL_PUBLIC_KEY
)
root() {{ [ "$(id -u)" = 0 ] && id "$user" >/dev/null 2>&1; }}

home="${{SHOAL_USER_HOME:-}}"
if [ -z "$home" ]; then
    if [ "$create_user" = yes ] && ! id "$user" >/dev/null 2>&1; then
        useradd -m -s /bin/sh "$user" 2>/dev/null || adduser -D -s /bin/sh "$user"
        # No password, yet not locked: sshd refuses a locked account its keys.
        usermod -p '*' "$user" 2>/dev/null || sed -i "s/^$user:!/$user:*/" /etc/shadow
    fi
    home=$(awk -F: -v u="$user" '$1 == u {{ print $6 }}' /etc/passwd)
fi
if [ -n "$home" ]; then
    mkdir -p "$home/.ssh" && chmod 700 "$home/.ssh"
    touch "$home/.ssh/authorized_keys" && chmod 600 "$home/.ssh/authorized_keys"
    grep -qxF "$key" "$home/.ssh/authorized_keys" \\
        || printf '%s\\n' "$key" >> "$home/.ssh/authorized_keys"
    if [ -z "${{SHOAL_USER_HOME:-}}" ] && root; then chown -R "$user" "$home/.ssh"; fi
fi

mkdir -p "$dir"
touch "$dir/agent-alive"
if root; then chown "$user" "$dir/agent-alive"; fi
pid=$(cat "$dir/watchdog.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \\
    && tr '\\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q watchdog.sh; then
    exit 0
fi
cat > "$dir/watchdog.sh" <<'SHOAL_WATCHDOG'
{loop}SHOAL_WATCHDOG
detach=$(command -v setsid || true)
nohup $detach sh "$dir/watchdog.sh" "$idle" "$every" "$dir" >/dev/null 2>&1 </dev/null &
"""


def _seconds(value: float) -> str:
    """A number of seconds as sh's ``sleep`` takes it (fractions where given)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def user_data(
    *,
    idle_stop: float,
    public_key: str,
    user: str,
    create_user: bool = True,
    watch_every: float = 60.0,
) -> str:
    """The user-data script: authorise ``public_key`` for ``user`` (made if missing and
    ``create_user``), then power off after ``idle_stop`` seconds without an agent."""
    if not _USER.fullmatch(user):
        raise BadInput(f"user {user!r} is not a login name: fix the pool's 'user'")
    key = public_key.strip()
    if not _KEY.fullmatch(key):
        raise BadInput(
            "the pool's public key is not one 'TYPE BASE64 [COMMENT]' line "
            "(ssh-ed25519, ssh-rsa, ecdsa-…): set the pool's 'key' to another pair"
        )
    if not (idle_stop > 0 and math.isfinite(idle_stop)):
        raise BadInput(f"idle_stop {idle_stop!r} must be a positive number of seconds")
    if not (watch_every > 0 and math.isfinite(watch_every)):
        raise BadInput(f"watch_every {watch_every!r} must be a positive number of seconds")
    return _SCRIPT.format(
        user=user,
        idle=max(1, math.ceil(idle_stop)),
        create_user="yes" if create_user else "no",
        every=_seconds(watch_every),
        key=key,
        loop=_LOOP,
    )
