#!/usr/bin/env bash
# Build the lab host image (Debian via debootstrap, systemd as init, Postfix, OpenSSH, swaks) and
# import it into podman as localhost/mailfleet-lab:<release>-<recipe hash>.
# Skips the build when an image for the current recipe exists.
#   RELEASE=trixie lab/build-image.sh    other Debian release (bookworm is the default)
#   MIRROR=http://... lab/build-image.sh  other Debian mirror
#   lab/build-image.sh --ref              print the image reference for the current recipe only
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
recipe=$root/lab/image
default_release=bookworm
release=${RELEASE:-$default_release}
mirror=${MIRROR:-http://deb.debian.org/debian}
repo=localhost/mailfleet-lab
state=$root/lab/.state

say() { echo "image: $*"; }
die() { echo "image: $*" >&2; exit 1; }

[[ $release =~ ^[a-z]+$ ]] || die "RELEASE must be a Debian codename such as bookworm, got '$release'"
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)

# Everything that shapes the image goes into the hash; the mirror does not. Only the executable
# bit of each file counts (git keeps nothing else, and umasks differ).
recipe_hash() {
  (
    cd "$root/lab"
    echo "release=$release arch=$arch"
    find build-image.sh image -type f -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' f; do
      printf '%s %s %s\n' "$f" "$([[ -x $f ]] && echo x || echo -)" "$(sha256sum <"$f" | cut -d' ' -f1)"
    done
  ) | sha256sum | cut -c1-12
}
tag=$release-$(recipe_hash)
ref=$repo:$tag

if [[ ${1:-} == --ref ]]; then
  echo "$ref"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap and rootful podman); try: sudo make image"
command -v podman >/dev/null || die "podman is not installed; run: make setup"
command -v debootstrap >/dev/null || die "debootstrap is not installed; run: make setup"

mkdir -p "$state"
exec 9>"$state/image.lock"
flock 9

# Point the aliases at this recipe's image and drop images of other recipes for this release
# (podman refuses while a container still uses one; that is fine).
tag_aliases() {
  podman tag "$ref" "$repo:$release"
  [[ $release != "$default_release" ]] || podman tag "$ref" "$repo:latest"
  podman images --filter "label=io.mailfleet.lab.release=$release" --format '{{.Repository}}:{{.Tag}}' |
    grep "^$repo:$release-" | grep -vx "$ref" | xargs -r podman rmi >/dev/null 2>&1 || true
}

if podman image exists "$ref"; then
  tag_aliases
  say "$ref is up to date (recipe unchanged)"
  exit 0
fi

start=$SECONDS
cache=$root/.cache/debootstrap/$release-$arch
mkdir -p "$cache"
rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/mailfleet-lab-rootfs.XXXXXX")
cleanup() {
  # debootstrap leaves /proc and /sys mounted inside the tree when it fails
  findmnt -rn -o TARGET | grep "^$rootfs/" | sort -r | xargs -r umount -l || true
  rm -rf --one-file-system "$rootfs"
}
trap cleanup EXIT

mapfile -t pkgs < <(grep -Ev '^\s*(#|$)' "$recipe/packages")
packages=$(IFS=,; echo "${pkgs[*]}")
log=$state/debootstrap-$release.log
say "building $ref: debootstrap $release minbase + ${#pkgs[@]} packages (log: lab/.state/${log##*/})"
if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$cache" \
  "$release" "$rootfs" "$mirror" >"$log" 2>&1; then
  tail -n 15 "$log" >&2
  die "debootstrap $release failed (mirror $mirror); full log: $log"
fi
say "debootstrap done after $((SECONDS - start)) s; removing build-host identity"
"$recipe/customize.sh" "$rootfs"

say "importing into podman"
tar -C "$rootfs" --numeric-owner -cf - . | podman import -q \
  --change 'CMD ["/sbin/init"]' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL io.mailfleet.lab.release=$release io.mailfleet.lab.recipe=$tag" \
  --message "mailfleet lab host ($release, recipe $tag)" \
  - "$ref" >/dev/null
tag_aliases

size=$(podman image inspect --format '{{.Size}}' "$ref")
say "built $ref ($((size / 1000000)) MB) in $((SECONDS - start)) s"
