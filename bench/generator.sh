#!/usr/bin/env bash
# Wall time of the master-less generator on this host's master.cf, against Debian's shell
# postfix-instance-generator on the same host (median of N runs each, interleaved). Three cases:
# unchanged (every boot and daemon-reload without an edit), master.cf changed since the saved unit
# set (an edit, then daemon-reload: full mapping), and no saved set at all (full mapping, nothing known).
#   bench/generator.sh [RUNS]        (default 30; needs postfix installed; no root needed)
# Prints one line per generator and the ratio; exits 1 when ours exceeds the 50 ms budget.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-30}
python=${PYTHON:-/usr/bin/python3}
debian=/lib/systemd/system-generators/postfix-instance-generator
config_dir=$(postconf -h config_directory)

# Generators write to tmpfs (/run/systemd/generator): measure on tmpfs too, not on a busy disk.
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT
# The same layout the systemd_units module installs: the module_utils package + a launcher.
lib=$work/libexec
mkdir -p "$lib/mailfleet_postfix" "$work/instances"
# The file list is the generator's own LIBRARY, so the bench never runs a partial package.
for name in $("$python" -c 'import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
print(" ".join(next(ast.literal_eval(n.value) for n in tree.body
                    if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "LIBRARY")))' \
    "$root/plugins/module_utils/_masterless_generator.py"); do
    cp "$root/plugins/module_utils/$name.py" "$lib/mailfleet_postfix/"
done
: > "$lib/mailfleet_postfix/__init__.py"
"$python" -m compileall -q "$lib/mailfleet_postfix"
"$python" - "$python" "$lib" > "$work/generator" <<'PY'
import sys
sys.path.insert(0, sys.argv[2] + "/mailfleet_postfix/..")
from mailfleet_postfix._masterless_generator import LAUNCHER
print(LAUNCHER.format(python=sys.argv[1], libexec=sys.argv[2]), end="")
PY
chmod +x "$work/generator"
name=$(postconf -h multi_instance_name)
# A copy of the configuration: the "changed" runs edit its master.cf.
cp -a "$config_dir" "$work/config"
echo "config_directory = $work/config" > "$work/instances/${name#postfix-}.conf"
[[ -n $name ]] || mv "$work/instances/.conf" "$work/instances/default.conf"
export MAILFLEET_POSTFIX_CONF_DIR=$work/instances MAILFLEET_POSTFIX_RUN_DIR=$work/run \
       MAILFLEET_POSTFIX_STATE_DIR=$work/state

"$python" - "$work" "$runs" "$debian" "$config_dir" <<'PY'
import os, statistics, sys, time

work, runs, debian, config_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
master_cf = os.path.join(work, "config", "master.cf")
with open(master_cf, "rb") as handle:
    original = handle.read()
edits = 0


def one(generator, edit=False, cold=False):
    """Wall and CPU (user+sys) milliseconds of one run into fresh output dirs.

    edit: change master.cf first (a comment line of its own each time), so the whole mapping runs.
    cold: forget the saved unit set first, so the whole mapping runs with nothing known.
    """
    global edits
    if edit:
        edits += 1
        with open(master_cf, "wb") as handle:
            handle.write(original + f"# edited by bench/generator.sh ({edits})\n".encode())
    out = os.path.join(work, "out")
    os.system(f"rm -rf {out}" + (f" {work}/run" if cold else ""))
    dirs = [os.path.join(out, d) for d in "nel"]
    for d in dirs:
        os.makedirs(d)
    t0 = time.perf_counter()
    pid = os.posix_spawn(generator, [generator, *dirs], dict(os.environ))
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    if status:
        sys.exit(f"generator: {generator} failed ({status})")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


ours_gen = os.path.join(work, "generator")
one(ours_gen)  # warm caches (and write the .pyc files)
units = len([n for n in os.listdir(os.path.join(work, "out", "n")) if "." in n])
ours, changed, cold, theirs = [], [], [], []
for _ in range(runs):
    ours.append(one(ours_gen))
    changed.append(one(ours_gen, edit=True))
    cold.append(one(ours_gen, cold=True))
    if os.access(debian, os.X_OK):
        theirs.append(one(debian))
med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
print(f"generator: mailfleet-postfix   {med(ours, 0):6.1f} ms wall, {med(ours, 1):5.1f} ms CPU "
      f"(median of {runs}; {units} units from {config_dir}/master.cf; boot or daemon-reload, master.cf unchanged)")
print(f"generator: mailfleet-postfix   {med(changed, 0):6.1f} ms wall, {med(changed, 1):5.1f} ms CPU "
      f"(master.cf changed: full mapping)")
print(f"generator: mailfleet-postfix   {med(cold, 0):6.1f} ms wall, {med(cold, 1):5.1f} ms CPU "
      f"(no saved unit set: full mapping)")
if theirs:
    print(f"generator: Debian postfix-instance-generator {med(theirs, 0):6.1f} ms wall, {med(theirs, 1):5.1f} ms CPU")
    for label, xs in (("unchanged", ours), ("changed", changed), ("no saved set", cold)):
        print(f"generator: ratio ours/Debian ({label}) = {med(xs, 0) / med(theirs, 0):.2f}x wall, "
              f"{med(xs, 1) / max(med(theirs, 1), 0.01):.2f}x CPU")
else:
    print(f"generator: {debian} not found; no ratio")
load = open("/proc/loadavg").read().split()[0]
print(f"generator: load average {load} on {os.cpu_count()} cores (wall time grows with it; CPU time hardly)")
sys.exit(0 if med(ours, 0) <= 50 else 1)
PY
