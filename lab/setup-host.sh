#!/usr/bin/env bash
# Prepare a Debian machine for the lab and the molecule scenarios: apt packages and the podman
# runtime configuration. Safe to run again; it only changes what is missing.
set -euo pipefail

conf=${CONTAINERS_CONF:-/etc/containers/containers.conf}
# netavark + aardvark-dns: a podman network whose container names resolve.
# postfix: its binaries (postconf, postfix check) for unit tests; no daemon runs on this host.
# systemd: systemd-analyze for unit checks. python3-venv: tools/venv.sh.
# prometheus: promtool, which checks the metrics file of instance_info in the unit tests.
packages=(podman runc netavark aardvark-dns iptables debootstrap debian-archive-keyring
  postfix systemd openssh-client python3 python3-venv ca-certificates prometheus)

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (installs apt packages, writes $conf); try: sudo make setup"
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  die "needs a Debian-like system with apt; install ${packages[*]} by hand"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  say "packages: all present"
else
  say "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The host only needs Postfix's binaries: leave it unconfigured and never start its daemon.
  if [[ " ${missing[*]} " == *" postfix "* ]]; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  fi
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary: lab/setup-host.sh installs packages without starting daemons\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
  fi
  cleanup() { [[ -z $made_policy ]] || rm -f "$policy"; }
  trap cleanup EXIT
  apt-get -q update >/dev/null || die "apt-get update failed (is the Debian mirror reachable?)"
  apt-get -q -y -o Dpkg::Options::=--force-confold install --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed; run it by hand to see why"
  cleanup
  trap - EXIT
  say "packages: installed"
fi

# Podman engine settings the lab needs (see docs/lab.md): crun cannot raise RLIMIT_NOFILE or run
# under hybrid cgroups on such machines, runc can; bounded ulimits fit under a low hard limit.
# Exit codes of the helper: 0 unchanged, 10 written, 2 conflict (message on stderr).
python=/usr/bin/python3
[[ -x $python ]] || python=python3
set +e
"$python" - "$conf" <<'PY'
import os
import sys
import tomllib

path = sys.argv[1]
want = {
    "containers": {"default_ulimits": ["nofile=4096:4096", "nproc=4096:4096"]},
    "engine": {"runtime": "runc"},
}
lines = {
    "containers": 'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]',
    "engine": 'runtime = "runc"',
}


def fail(msg):
    print(f"setup: {msg}", file=sys.stderr)
    sys.exit(2)


text = ""
if os.path.exists(path):
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
try:
    have = tomllib.loads(text)
except tomllib.TOMLDecodeError as exc:
    fail(f"{path} is not valid TOML ({exc}); fix it, then rerun")

todo = []
for table, keys in want.items():
    for key, value in keys.items():
        current = have.get(table, {}).get(key)
        if current is None:
            todo.append(table)
        elif current != value:
            fail(f"{path} already sets [{table}] {key} = {current!r}; the lab needs {value!r}."
                 " Change it yourself (or remove it so this script can add it), then rerun")
if not todo:
    sys.exit(0)

out = text.splitlines()
for table in todo:
    header = f"[{table}]"
    idx = next((i for i, line in enumerate(out) if line.strip() == header), None)
    if idx is None:
        out += ["", header] if out else [header]
        idx = len(out) - 1
    out.insert(idx + 1, lines[table])
new = "\n".join(out) + "\n"
tomllib.loads(new)
if text:
    with open(path + ".mailfleet-orig", "w", encoding="utf-8") as fh:
        fh.write(text)
os.makedirs(os.path.dirname(path), exist_ok=True)
tmp = path + ".mailfleet-tmp"
with open(tmp, "w", encoding="utf-8") as fh:
    fh.write(new)
os.chmod(tmp, 0o644)
os.replace(tmp, path)
sys.exit(10)
PY
rc=$?
set -e
case $rc in
  0) say "podman: $conf already has the lab's runtime and ulimits" ;;
  10) say "podman: wrote runtime=runc and default_ulimits into $conf" ;;
  *) exit 1 ;;
esac
# Each systemd container takes ~10 inotify instances; the kernel default of 128 runs out with a
# dozen lab containers ("Too many open files" in units).
want_inotify=1024
if [[ $(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0) -lt $want_inotify ]]; then
  if sysctl -qw fs.inotify.max_user_instances=$want_inotify 2>/dev/null; then
    echo "fs.inotify.max_user_instances = $want_inotify" > /etc/sysctl.d/60-mailfleet-lab.conf
    say "kernel: raised fs.inotify.max_user_instances to $want_inotify"
  else
    say "kernel: could not raise fs.inotify.max_user_instances (large labs may hit 'Too many open files')"
  fi
fi
say "done"
