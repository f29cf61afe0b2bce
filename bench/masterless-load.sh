#!/usr/bin/env bash
# master(8) vs master-less under load, side by side on this host (issue 4, "Must show"):
#   smtp-source -s 20 -l 2048 -m 1000 to 127.0.0.1:25 -> local mailbox, interleaved rounds in two lab
#   containers (A: stock master, B: mailfleet.postfix.systemd_units mode=systemd), then the PSS of every
#   Postfix-related process (holder and bridge included) after 2 minutes without load.
#   bench/masterless-load.sh [ROUNDS]      (default 5; root, podman and the lab image; ~10 min)
# Prints per-round times, the median ratio B/A and the PSS ratio; exits 1 when B is over 1.1x time or 2x PSS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-5}
image=${MAILFLEET_LAB_IMAGE:-localhost/mailfleet-lab:latest}
a=mailfleet-bench-master
b=mailfleet-bench-masterless
idle=${IDLE_SECONDS:-120}

say() { echo "bench: $*"; }
[[ $(id -u) -eq 0 ]] || { say "must run as root (rootful podman boots systemd)"; exit 1; }
cleanup() { podman rm -f "$a" "$b" >/dev/null 2>&1 || true; }
# KEEP=1 leaves the containers for a look afterwards (remove them with: podman rm -f mailfleet-bench-...)
[[ ${KEEP:-0} == 1 ]] || trap cleanup EXIT
cleanup
for c in "$a" "$b"; do
  podman run -d --name "$c" --hostname "$c" --cap-add SYS_ADMIN --cap-add NET_ADMIN "$image" /sbin/init >/dev/null
done
for c in "$a" "$b"; do
  podman exec "$c" sh -c 'systemctl is-system-running --wait >/dev/null 2>&1; useradd -m load 2>/dev/null || true'
done

say "switching $b to the master-less mode"
"$root/tools/collection-link.sh"
ANSIBLE_COLLECTIONS_PATH=$root/build/collections "$root/.venv/bin/ansible" -i "$b," -c containers.podman.podman \
  -e ansible_python_interpreter=/usr/bin/python3 -m mailfleet.postfix.systemd_units -a mode=systemd "$b" >/dev/null
podman exec "$b" sh -c '! pgrep -x master' || { say "a master runs in $b"; exit 1; }

load() {  # prints seconds until all messages are in the mailbox
  podman exec -i "$1" python3 - <<'PY'
import os, subprocess, time
box = "/var/mail/load"
open(box, "w").close()
os.system("chown load:mail " + box)
t0 = time.monotonic()
subprocess.run(["smtp-source", "-s", "20", "-l", "2048", "-m", "1000", "-f", "bench@localhost",
                "-t", "load@localhost", "127.0.0.1:25"], check=True)
while True:
    with open(box, "rb") as f:
        if f.read().count(b"\nFrom ") + 1 >= 1000:
            break
    if time.monotonic() - t0 > 600:
        raise SystemExit("not all messages delivered within 600 s")
    time.sleep(0.05)
print(f"{time.monotonic() - t0:.2f}")
PY
}

pss() {  # KiB of PSS of the Postfix-related processes (their cgroup names postfix), and their count
  # --privileged: smaps of set-uid daemons needs CAP_SYS_PTRACE.
  podman exec -i --privileged "$1" python3 - <<'PY'
import os
total = count = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if "postfix" not in open(f"/proc/{pid}/cgroup").read():
            continue
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                count += 1
    except OSError:
        pass
print(total, count)
PY
}

ta=() tb=()
for ((r = 1; r <= rounds; r++)); do
  x=$(load "$a"); y=$(load "$b")
  ta+=("$x"); tb+=("$y")
  say "round $r: master ${x}s, master-less ${y}s, ratio $(awk -v x="$x" -v y="$y" 'BEGIN {printf "%.2f", y / x}')"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
ma=$(median "${ta[@]}") mb=$(median "${tb[@]}")
ratio=$(awk -v x="$ma" -v y="$mb" 'BEGIN {printf "%.2f", y / x}')
say "median: master ${ma}s, master-less ${mb}s, ratio ${ratio}x (budget 1.1x)"
podman exec "$b" sh -c '/usr/bin/python3 -I -S /usr/libexec/mailfleet-postfix/bridge status --holder /run/mailfleet-postfix/default/holder.sock' \
  | python3 -c 'import json,sys; print("bench: pools after load:", {k.split("-",2)[-1]: len(v["workers"]) for k, v in json.load(sys.stdin).items()})'
say "waiting ${idle}s without load"
sleep "$idle"
read -r pa na < <(pss "$a")
read -r pb nb < <(pss "$b")
pratio=$(awk -v x="$pa" -v y="$pb" 'BEGIN {printf "%.2f", y / x}')
say "PSS after ${idle}s idle: master $((pa / 1024)) MiB in $na processes, master-less $((pb / 1024)) MiB in $nb processes, ratio ${pratio}x (budget 2x)"
say "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
awk -v r="$ratio" -v p="$pratio" 'BEGIN {exit !(r <= 1.1 && p <= 2.0)}'
