#!/usr/bin/env bash
# The lab: a small Postfix fleet in podman containers, managed over SSH like real hosts.
#   lab/lab.sh up       build/reuse the image, start or reuse the fleet, run playbooks/site.yml,
#                       send a probe mail (playbooks/probe.yml), print a summary ending with the
#                       fleet's status table (playbooks/status.yml)
#   lab/lab.sh status   summary and status table of the running lab
#   lab/lab.sh down     remove the lab's containers and network, nothing else
#   LAB_FRESH=1 lab/lab.sh up   replace a running lab instead of reusing it
#   LAB_SITE=my.yml lab/lab.sh up   run another playbook instead of playbooks/site.yml
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=$root/lab/.state
prefix=mailfleet-lab
network=$prefix
label=io.mailfleet.lab=fleet
domain=lab.example
# inventory name:group; container names are $prefix-<name>
fleet=(edge1:edge edge2:edge delivery1:delivery client1:client)
key=$state/id_ed25519
inventory=$state/inventory.ini
start=$SECONDS

say() { printf '[%3ds] lab: %s\n' "$((SECONDS - start))" "$*"; }
die() { echo "lab: $*" >&2; exit 1; }

preflight() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (rootful podman for systemd containers); try: sudo make lab"
  command -v podman >/dev/null || die "podman is not installed; run: make setup"
}

lab_containers() {
  podman ps -a --filter "label=$label" --format '{{.Names}}' | grep "^$prefix-" || true
}

lab_network_exists() {
  podman network ls --filter "label=$label" --format '{{.Name}}' | grep -qx "$network"
}

down() {
  local names
  mapfile -t names < <(lab_containers)
  if ((${#names[@]})); then
    say "removing containers ${names[*]}"
    podman rm -f -t 5 "${names[@]}" >/dev/null
  fi
  if lab_network_exists; then
    say "removing network $network"
    podman network rm "$network" >/dev/null
  fi
  rm -f "$inventory" "$state"/site.json "$state"/probe.json "$state"/status.json
  say "down: no lab containers or network left"
}

python_bin() {
  if [[ -x $root/.venv/bin/python ]]; then echo "$root/.venv/bin/python"; else echo python3; fi
}

ansible_env() {
  local bin=$root/.venv/bin
  [[ -x $bin/ansible-playbook ]] && PATH=$bin:$PATH
  command -v ansible-playbook >/dev/null || die "ansible-playbook not found; run: make venv"
  if [[ -z ${ANSIBLE_COLLECTIONS_PATH:-} ]]; then
    "$root/tools/collection-link.sh" || die "tools/collection-link.sh failed"
    export ANSIBLE_COLLECTIONS_PATH=$root/build/collections
  fi
  export PATH ANSIBLE_ROLES_PATH=${ANSIBLE_ROLES_PATH:-$root/roles}
  export ANSIBLE_PIPELINING=True ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_RETRY_FILES_ENABLED=False
  export ANSIBLE_FORKS=10 ANSIBLE_GATHERING=explicit ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-1}
  export ANSIBLE_CALLBACK_PLUGINS=$root/lab/callback ANSIBLE_CALLBACKS_ENABLED=mailfleet_lab
}

# Run a playbook (further arguments go to ansible-playbook); full output goes to
# lab/.state/<name>.log, the console gets one line per task.
run_playbook() {
  local name=$1 playbook=$2 rc
  shift 2
  rm -f "$state/$name.json"
  say "running ${playbook#"$root"/} (log: lab/.state/$name.log)"
  set +e
  MAILFLEET_LAB_RESULT=$state/$name.json \
    ansible-playbook -i "$inventory" "$playbook" "$@" 2>&1 | tee "$state/$name.log" |
    sed -un -e 's/^PLAY \[\(.*\)\] \**$/      play: \1/p' -e 's/^TASK \[\(.*\)\] \**$/        \1/p' \
      -e 's/^\(\(fatal\|failed\|ERROR\).\{0,300\}\).*/\1/p'
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

ip_of() {
  podman inspect --format "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$1"
}

wait_ssh() {
  local ip=$1 tries=$2
  while ((tries-- > 0)); do
    ssh -q -i "$key" -o BatchMode=yes -o ConnectTimeout=2 -o StrictHostKeyChecking=no \
      -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "root@$ip" true && return 0
    sleep 1
  done
  return 1
}

# Reuse only a complete, running fleet on the current image that still accepts our key.
reusable() {
  local image_id=$1 entry name want have
  [[ -z ${LAB_FRESH:-} && -f $key ]] || return 1
  lab_network_exists || return 1
  want=$(for entry in "${fleet[@]}"; do echo "$prefix-${entry%%:*}"; done | sort)
  have=$(lab_containers | sort)
  [[ $want == "$have" ]] || return 1
  for entry in "${fleet[@]}"; do
    name=$prefix-${entry%%:*}
    [[ $(podman inspect --format '{{.State.Running}} {{.Image}}' "$name") == "true $image_id" ]] || return 1
    wait_ssh "$(ip_of "$name")" 3 || return 1
  done
}

create_fleet() {
  local image=$1 entry host group
  # 8>&-: conmon and aardvark-dns outlive this script and must not inherit the lock.
  # aardvark-dns also keeps stderr and complains about a missing syslog; send it to a log file.
  podman network create --label "$label" "$network" >/dev/null 8>&- 2>>"$state/podman.log"
  for entry in "${fleet[@]}"; do
    host=${entry%%:*} group=${entry#*:}
    # SYS_ADMIN: systemd enforces sandboxing (ProtectSystem=...) only with it; NET_ADMIN for
    # services that set socket options. No --privileged.
    podman run -d --name "$prefix-$host" --hostname "$host.$domain" \
      --network "$network" --network-alias "$host" \
      --cap-add SYS_ADMIN --cap-add NET_ADMIN \
      --label "$label" --label "io.mailfleet.lab.group=$group" \
      --volume "$key.pub:/root/.ssh/authorized_keys:ro" \
      "$image" /sbin/init >/dev/null 8>&- 2>>"$state/podman.log" ||
      die "podman run $prefix-$host failed: $(tail -n 3 "$state/podman.log")"
  done
}

write_inventory() {
  local entry host group ip groups=(edge delivery client)
  {
    echo "# Generated by lab/lab.sh for the running lab; rewritten on every 'make lab'."
    for group in "${groups[@]}"; do
      echo "[$group]"
      for entry in "${fleet[@]}"; do
        host=${entry%%:*}
        [[ ${entry#*:} == "$group" ]] || continue
        ip=$(ip_of "$prefix-$host")
        echo "$host ansible_host=$ip lab_container=$prefix-$host"
      done
      echo
    done
    cat <<EOF
[all:vars]
ansible_user=root
ansible_ssh_private_key_file=$key
ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'
ansible_python_interpreter=/usr/bin/python3
lab_domain=$domain
postfix_edge_domains=["$domain"]
postfix_delivery_users=["alice"]
postfix_probe_recipient=alice@$domain
# The lab never sends mail to the outside world.
postfix_edge_main_cf={"default_transport": "error:5.7.1 this lab delivers only to $domain"}
postfix_delivery_main_cf={"default_transport": "error:5.7.1 this lab delivers only to $domain"}
EOF
  } >"$inventory.tmp"
  mv "$inventory.tmp" "$inventory"
}

up() {
  preflight
  ansible_env
  mkdir -p "$state"
  exec 8>"$state/lab.lock"
  flock -n 8 || die "another 'lab.sh' is running (lock lab/.state/lab.lock)"

  say "image"
  "$root/lab/build-image.sh"
  local image image_id entry name fleet_mode=created site_rc=0 probe_rc=0
  image=$("$root/lab/build-image.sh" --ref)
  image_id=$(podman image inspect --format '{{.Id}}' "$image")

  [[ -f $key ]] || ssh-keygen -q -t ed25519 -N '' -C "$prefix throwaway key" -f "$key"

  if reusable "$image_id"; then
    fleet_mode=reused
    say "reusing the running lab (LAB_FRESH=1 replaces it)"
  else
    if [[ -n $(lab_containers) ]] || lab_network_exists; then
      say "replacing the previous lab"
      down
    fi
    say "starting ${#fleet[@]} containers on network $network from $image"
    create_fleet "$image"
    for entry in "${fleet[@]}"; do
      name=$prefix-${entry%%:*}
      timeout 90 podman exec "$name" systemctl is-system-running --wait >/dev/null ||
        say "warning: systemd in $name is $(podman exec "$name" systemctl is-system-running || true)"
      wait_ssh "$(ip_of "$name")" 30 || die "no SSH to $name after 30 s; see: podman exec $name journalctl -u ssh"
    done
  fi
  say "fleet up: $(lab_containers | xargs)"
  write_inventory
  rm -f "$state"/site.json "$state"/probe.json "$state"/status.json

  run_playbook site "${LAB_SITE:-$root/playbooks/site.yml}" || site_rc=$?
  if ((site_rc == 0)); then
    run_playbook probe "$root/playbooks/probe.yml" || probe_rc=$?
    run_status
  fi
  "$(python_bin)" "$root/lab/summary.py" --state "$state" --image "$image" --fleet "$fleet_mode" \
    --seconds "$((SECONDS - start))"
  ((site_rc == 0 && probe_rc == 0))
}

# The fleet's status table, for the summary. The play fails on a queue above a threshold too: the
# summary prints it and fails the lab only when an instance is down. The client runs no Postfix.
run_status() {
  run_playbook status "$root/playbooks/status.yml" -e mailfleet_status_hosts=mailfleet_edge:mailfleet_delivery || true
}

status() {
  preflight
  [[ -n $(lab_containers) ]] || die "no lab is running; start one with: make lab"
  if [[ -f $inventory ]]; then
    ansible_env
    run_status
  fi
  "$(python_bin)" "$root/lab/summary.py" --state "$state" --image "" --fleet running --seconds -1
}

case ${1:-} in
  up) up ;;
  down)
    preflight
    mkdir -p "$state"
    exec 8>"$state/lab.lock"
    flock -w 60 8 || die "another 'lab.sh' holds lab/.state/lab.lock"
    down
    ;;
  status) status ;;
  *) die "usage: lab/lab.sh up|down|status" ;;
esac
