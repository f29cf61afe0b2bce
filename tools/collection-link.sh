#!/usr/bin/env bash
# Make this checkout visible to ansible as mailfleet.postfix (ANSIBLE_COLLECTIONS_PATH=build/collections).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/build/collections/ansible_collections/mailfleet
mkdir -p "$dest"
ln -sfn "$root" "$dest/postfix"
