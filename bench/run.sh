#!/usr/bin/env bash
# make bench: every benchmark on a bench fleet of lab containers, tables on stdout, JSON in
# bench/results/bench-<time>.json, containers removed afterwards (BENCH_KEEP=1 keeps them).
#   bench/run.sh [all|generator|rollout|throughput|footprint]    (default all; ~15 min on 2 cores)
#   bench/run.sh report bench/results/FILE.json                 tables of an earlier run
#   bench/run.sh down                                           remove leftover bench containers
# Scale with BENCH_MESSAGES, BENCH_ROUNDS, BENCH_SIZES, BENCH_CONCURRENCY, ... (see bench/bench.py).
# Containers are named mailfleet-bench-* on the network mailfleet-bench; nothing else is touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
die() { echo "bench: $*" >&2; exit 1; }

python=$root/.venv/bin/python
[[ -x $python ]] || die "no .venv; run: make venv"
if [[ ${1:-all} == report ]]; then
  exec "$python" bench/bench.py "$@"
fi
[[ $(id -u) -eq 0 ]] || die "must run as root (rootful podman boots systemd in the bench hosts)"
command -v podman >/dev/null || die "podman is not installed; run: make setup"
command -v postconf >/dev/null || die "postfix is not installed on this host (generator timing); run: make setup"

if [[ ${1:-all} != down ]]; then
  # Every systemd container holds ~10 inotify instances of host root; the kernel default of 128
  # lets .path units and journald fail with "Too many open files" once ~12 containers run.
  inotify=$(sysctl -n fs.inotify.max_user_instances)
  ((inotify >= 512)) || die "fs.inotify.max_user_instances is $inotify; the bench fleet needs more: sysctl -w fs.inotify.max_user_instances=1024"
  lab/build-image.sh >/dev/null
  MAILFLEET_LAB_IMAGE=${MAILFLEET_LAB_IMAGE:-$(lab/build-image.sh --ref)}
  export MAILFLEET_LAB_IMAGE
  # Numbers taken while molecule scenarios run would measure them, not Postfix: share their
  # machine-wide lock (BENCH_LOCK=0 skips this, e.g. while developing the harness).
  if [[ ${BENCH_LOCK:-1} == 1 ]]; then
    lock=${MAILFLEET_MOLECULE_LOCK:-/tmp/mailfleet-molecule.lock}
    exec 9>"$lock"
    if ! flock -n 9; then
      echo "bench: waiting for a molecule run on this machine to finish (lock $lock)"
      flock 9
    fi
  fi
fi
export BENCH_COMMAND="bench/run.sh $*"
# 9>&-: containers outlive this script and must not hold the lock.
"$python" bench/bench.py "$@" 9>&-
