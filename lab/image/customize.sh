#!/usr/bin/env bash
# Turn a fresh debootstrap tree into a neutral lab host: add our first-boot unit and remove
# everything that identifies the build host or would be shared by every container.
set -euo pipefail
rootfs=${1:?usage: customize.sh ROOTFS}
here=$(cd "$(dirname "$0")" && pwd)
cd "$rootfs"

cp -a "$here/overlay/." .
# Owner and mode must not depend on the checkout's user and umask.
(cd "$here/overlay" && find . -type f -printf '%P\0') | xargs -0 -r sh -c 'chown root:root "$@" && chmod u=rwX,go=rX "$@"' sh
systemctl --root=. --quiet enable mailfleet-firstboot.service

# systemd creates a fresh machine-id at boot when the file is empty.
: >etc/machine-id
rm -f var/lib/dbus/machine-id
ln -s /etc/machine-id var/lib/dbus/machine-id
rm -f etc/ssh/ssh_host_* var/lib/systemd/random-seed
rm -f etc/ssl/private/ssl-cert-snakeoil.key etc/ssl/certs/ssl-cert-snakeoil.pem
find etc/ssl/certs -xtype l -delete
# podman provides hostname, hosts and resolv.conf per container.
echo localhost >etc/hostname
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >etc/hosts
rm -f etc/resolv.conf etc/mailname

# Postfix falls back to its built-in defaults, derived from the container's own hostname.
chroot . postconf -X myhostname mydestination myorigin

find var/log -type f -delete
rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb \
  var/cache/debconf/*-old var/cache/ldconfig/aux-cache tmp/* var/tmp/*
