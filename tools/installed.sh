#!/usr/bin/env bash
# The collection as users get it: build the tarball from a copy of the files a fresh clone has (tracked),
# check that a build from this (used) checkout ships the same files, install the tarball into a
# collections path of its own and run tests/installed/play.yml against a lab host from that copy.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# The tools' per-user state (~/.ansible, caches) stays in the checkout, run from make or not.
export HOME=$root/build/home
mkdir -p "$HOME"
cd "$root"
[[ -x $root/.venv/bin/ansible-galaxy ]] && PATH=$root/.venv/bin:$PATH
work=$root/build/installed
host=mailfleet-installed
say() { echo "installed: $*"; }
die() { echo "installed: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (rootful podman boots systemd in the lab host)"

rm -rf "$work"
mkdir -p "$work/fresh" "$work/used" "$work/collections"
# A fresh clone has the tracked files only (an untracked file must not ship unnoticed).
git ls-files -z \
  | while IFS= read -r -d '' f; do if [[ -e $f || -L $f ]]; then printf '%s\0' "$f"; fi; done \
  | tar --null -T - -cf - | tar -xf - -C "$work/fresh"
ansible-galaxy collection build -v --output-path "$work" "$work/fresh" >/dev/null
tarball=$(ls "$work"/mailfleet-postfix-*.tar.gz)
ansible-galaxy collection build --output-path "$work/used" "$root" >/dev/null
members() { tar -tzf "$1" | sed 's#/$##' | sort; }
if ! diff <(members "$tarball") <(members "$work/used"/mailfleet-postfix-*.tar.gz) >"$work/members.diff"; then
  sed 's/^/installed:   /' "$work/members.diff" >&2
  die "a build from this checkout ships other files than one from a fresh clone (< fresh, > this checkout): add caches to build_ignore in galaxy.yml; git add new files (untracked: $(git ls-files -o --exclude-standard | head -5 | tr '\n' ' '))"
fi
say "tarball $(basename "$tarball"): $(members "$tarball" | wc -l) entries, the same from this checkout as from a fresh clone"

# Only the installed copy: not build/collections (the link to this checkout), nor a copy that
# molecule put in the tools' home.
export ANSIBLE_COLLECTIONS_PATH=$work/collections
ansible-galaxy collection install --offline --force -p "$work/collections" "$tarball" >/dev/null
where=$(ansible-galaxy collection list mailfleet.postfix --format json)
[[ $where == *"$work/collections/ansible_collections"* && $where != *"$root/build/collections"* ]] \
  || die "mailfleet.postfix does not resolve to the installed copy only: $where"
for role in instance edge delivery; do
  ansible-doc -t role "mailfleet.postfix.$role" >/dev/null || die "ansible-doc cannot render role $role from the installed copy"
done

image=$(lab/build-image.sh --ref)
podman rm -f -t 0 "$host" >/dev/null 2>&1 || true
trap 'podman rm -f -t 0 "$host" >/dev/null 2>&1 || true' EXIT
podman run -d --name "$host" --cap-add SYS_ADMIN --cap-add NET_ADMIN "$image" /sbin/init >/dev/null
for _ in $(seq 60); do
  state=$(podman exec "$host" systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  sleep 1
done
cd "$work"
ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 ansible-playbook -i "$host," -c containers.podman.podman \
  "$root/tests/installed/play.yml"
say "ok: the play ran from the collection installed from the tarball"
