"""master.cf -> systemd units: argv, listeners, modes, wakeups, errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import (
    FORKS_PER_UNIT,
    Instance,
    UnitSet,
    build_units,
    escape,
    exec_quote,
    master_argv,
    unit_value,
)
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_mastercf import MasterCf, MasterCfError
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import DAEMONS

DEBIAN = (Path(__file__).parent / "fixtures" / "debian-master.cf").read_text()
BRIDGE = ["/usr/bin/python3", "-I", "-S", "/usr/libexec/mailfleet-postfix/bridge"]
HOSTS = {"localhost": ["127.0.0.1", "::1"], "mx.example": ["192.0.2.7", "2001:db8::7"]}


def resolver(host: str) -> list[str]:
    if host not in HOSTS:
        raise OSError("Name or service not known")
    return HOSTS[host]


def ports(name: str) -> int:
    if name == "imap":
        return 143
    raise OSError("service not found")


def build(text: str, **facts: object) -> UnitSet:
    return build_units(text, Instance(**facts), resolver=resolver, port_resolver=ports)


def key(unit: str, name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(name + "=")]


def argv_of(units: UnitSet, service: str, kind: str) -> list[str]:
    return next(p.argv for p in units.services if (p.service, p.type) == (service, kind))


@pytest.fixture(scope="module")
def debian() -> UnitSet:
    return build(DEBIAN)


# --------------------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("smtp", "smtp"),
        ("127.0.0.1:10025", "127.0.0.1\\x3a10025"),
        ("[::1]:25", "\\x5b\\x3a\\x3a1\\x5d\\x3a25"),
        ("scalemail-backend", "scalemail\\x2dbackend"),
        ("dovecot/lmtp", "dovecot-lmtp"),
        (".hidden", "\\x2ehidden"),
        ("a+b", "a\\x2bb"),
    ],
)
def test_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("plain", "plain"),
        ("postfix/$service_name", "postfix/$$service_name"),
        ("${recipient}", "$${recipient}"),
        ("100%", "100%%"),
        ("a\\b", "a\\\\b"),
        ('say "hi"', '"say \\"hi\\""'),
        ("it's", "it\\'s"),
        (";", "\\;"),
        ("smtpd_banner = hello world", '"smtpd_banner = hello world"'),
        ("", '""'),
        ("a\tb", "a\\tb"),
        ("a\nb\x00\x7f\x1f", "a\\x0ab\\x00\\x7f\\x1f"),
    ],
)
def test_exec_quote(arg: str, quoted: str) -> None:
    assert exec_quote(arg) == quoted


# --------------------------------------------------------------------------- argv as master builds it


@pytest.mark.parametrize(
    ("service", "kind", "expected"),
    [
        # Seen under a real master (postfix-facts §2.1).
        ("smtp", "inet", "smtpd -n smtp -t inet -u -c -o stress= -s 2"),
        ("pickup", "unix", "pickup -l -t unix -u -c"),
        ("qmgr", "unix", "qmgr -l -t unix -u"),
        ("cleanup", "unix", "cleanup -z -t unix -u -c"),
        ("rewrite", "unix", "trivial-rewrite -n rewrite -t unix -u -c"),
        ("proxymap", "unix", "proxymap -t unix -u"),
        ("local", "unix", "local -t unix"),
        ("relay", "unix", "smtp -n relay -t unix -u -c -o syslog_name=postfix/$service_name"),
    ],
)
def test_master_argv_matches_master(debian: UnitSet, service: str, kind: str, expected: str) -> None:
    assert " ".join(next(p.master_argv for p in debian.services if (p.service, p.type) == (service, kind))) == expected


def test_master_argv_keeps_o_options_interleaved_and_braces_stripped() -> None:
    doc = MasterCf.parse(
        "submission inet n - y - - smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o { smtpd_banner = hello  world }\n"
        "  -v\n"
        "  -o smtpd_tls_security_level=encrypt\n"
    )
    entry = doc.entries(enabled=True)[0]
    argv = master_argv(entry, Instance(), listen_count=1, local_only=False)
    assert argv == ["smtpd", "-n", "submission", "-t", "inet", "-u", "-c", "-o", "stress=",
                    "-o", "syslog_name=postfix/submission", "-o", "smtpd_banner = hello  world", "-v",
                    "-o", "smtpd_tls_security_level=encrypt"]


def test_chroot_default_follows_compatibility_level() -> None:
    text = "smtp inet n - - - - smtpd\n"
    old = build(text, compatibility_level="0")
    new = build(text, compatibility_level="2")
    assert "-c" in old.services[0].master_argv
    assert "-c" not in new.services[0].master_argv


# --------------------------------------------------------------------------- our argv


def test_owner_daemons_drop_u_and_sandbox_replaces_c(debian: UnitSet) -> None:
    smtpd = argv_of(debian, "smtp", "inet")
    assert "-u" not in smtpd and "-c" not in smtpd
    unit = debian.units["postfix-default-smtp-inet@.service"]
    assert key(unit, "User") == ["postfix"]
    assert key(unit, "CapabilityBoundingSet") == [""]


def test_root_daemons_keep_u(debian: UnitSet) -> None:
    cleanup = argv_of(debian, "cleanup", "unix")
    assert cleanup == ["cleanup", "-z", "-t", "unix", "-u"]
    unit = debian.units["postfix-default-cleanup-unix@.service"]
    assert key(unit, "User") == []
    assert key(unit, "CapabilityBoundingSet") == ["CAP_SETUID CAP_SETGID CAP_DAC_OVERRIDE"]


def test_chroot_postfix_keeps_c_and_cap_sys_chroot() -> None:
    units = build(DEBIAN, chroot="postfix")
    assert argv_of(units, "cleanup", "unix")[-1] == "-c"
    unit = units.units["postfix-default-cleanup-unix@.service"]
    assert "CAP_SYS_CHROOT" in key(unit, "CapabilityBoundingSet")[0]
    assert "chroot" in key(unit, "SystemCallFilter")
    # chroot(2) needs root: smtpd (unpriv, chroot=y) keeps -c and starts as root, dropping privileges itself.
    assert {"-c", "-u"} <= set(argv_of(units, "smtp", "inet"))


def test_exec_start_escapes_dollar_and_groups_braces() -> None:
    units = build("relay unix - - y - - smtp -o syslog_name=postfix/$service_name\n"
                  "  -o { smtp_helo_name = a b }\n")
    start = key(units.units["postfix-default-relay-unix@.service"], "ExecStart")[0]
    assert start.endswith('-o syslog_name=postfix/$$service_name -o "smtp_helo_name = a b"')


def test_pipe_macros_are_escaped(debian: UnitSet) -> None:
    start = key(debian.units["postfix-default-mailman-unix@.service"], "ExecStart")[0]
    assert "argv=/usr/lib/mailman/bin/postfix-to-mailman.py $${nexthop} $${user}" in start
    assert " -- /usr/lib/postfix/sbin/pipe pipe -n mailman -t unix -o max_use=1000 flags=FRX user=list " in start


# --------------------------------------------------------------------------- modes


def test_pool_template_with_socket_activated_first_worker(debian: UnitSet) -> None:
    sock = debian.units["postfix-default-smtp-inet.socket"]
    assert key(sock, "Service") == ["postfix-default-smtp-inet@1.service"]
    assert key(sock, "Accept") == []
    svc = debian.units["postfix-default-smtp-inet@.service"]
    assert key(svc, "Sockets") == ["postfix-default-smtp-inet.socket"]
    start = key(svc, "ExecStart")[0]
    assert start.startswith("/usr/bin/python3 -I -S /usr/libexec/mailfleet-postfix/bridge run ")
    assert "--maxproc 100 " in start and "--unit %n --" in start
    assert key(svc, "Restart") == ["on-failure"]


@pytest.mark.parametrize(("entry", "facts", "max_use"), [
    ("smtp inet n - y - - smtpd", {}, 1000),  # main.cf's 100 x the default factor 10
    ("smtp inet n - y - - smtpd", {"max_use": "50", "max_use_factor": "4"}, 200),
    ("smtp inet n - y - - smtpd", {"max_use_factor": "1"}, 100),  # Postfix's own value
    ("smtp inet n - y - - smtpd -o max_use=7", {}, 7),  # the admin's pin stays as it is
])
def test_pool_workers_serve_max_use_times_the_factor(entry: str, facts: dict[str, str], max_use: int) -> None:
    units = build(entry + "\n", **facts)
    start = key(units.units["postfix-default-smtp-inet@.service"], "ExecStart")[0]
    assert f"--max-use {max_use} " in start  # the holder's count matches the daemon's
    daemon_argv = start.split(" -- ", 1)[1].split()
    assert f"max_use={max_use}" in daemon_argv
    assert start.count("max_use=") == 1


@pytest.mark.parametrize(("unit", "forks"), [
    ("postfix-default-smtp-inet@.service", True),  # single-server pools that clients queue for
    ("postfix-default-cleanup-unix@.service", True),
    ("postfix-default-local-unix@.service", True),
    ("postfix-default-rewrite-unix@.service", False),  # multi-server: one daemon takes many clients
    ("postfix-default-qmgr-unix.service", False),  # not a pool
    ("postfix-default-verify-unix.service", False),  # retired through its status channel
])
def test_single_server_pools_fork_their_daemons(debian: UnitSet, unit: str, forks: bool) -> None:
    start = key(debian.units[unit], "ExecStart")[0]
    assert (f"--forks {FORKS_PER_UNIT} " in start) is forks


def test_persistent_qmgr(debian: UnitSet) -> None:
    assert "postfix-default-qmgr-unix.service" in debian.units
    assert key(debian.units["postfix-default-qmgr-unix.service"], "Restart") == ["always"]
    assert "postfix-default-qmgr-unix.service" in key(debian.units["postfix-default.target"], "Wants")


@pytest.mark.parametrize(("service", "maxconn"), [("pickup", "1"), ("flush", "1024"), ("showq", "100")])
def test_accept_mode_for_low_rate_services(debian: UnitSet, service: str, maxconn: str) -> None:
    sock = debian.units[f"postfix-default-{service}-unix.socket"]
    assert key(sock, "Accept") == ["yes"]
    assert key(sock, "MaxConnections") == [maxconn]
    svc = debian.units[f"postfix-default-{service}-unix@.service"]
    start = key(svc, "ExecStart")[0]
    assert start.startswith(f"@/usr/lib/postfix/sbin/{service} {service} -S ")
    assert key(svc, "StandardInput") == ["socket"]
    assert "bridge" not in start


def test_mode_table_matches_facts() -> None:
    multi = [n for n, d in DAEMONS.items() if d.skeleton in ("multi", "event", "dgram")]
    assert all(DAEMONS[n].mode == "pool" for n in multi)
    assert {n for n, d in DAEMONS.items() if d.mode == "accept"} == {"pickup", "flush", "showq", "error", "discard"}


def test_every_unit_carries_the_limits_that_stopped_mail(debian: UnitSet) -> None:
    for name, unit in debian.units.items():
        if name.endswith(".socket"):
            assert key(unit, "TriggerLimitIntervalSec") == ["0"], name
        if name.endswith(".service") and "wakeup" not in name:
            assert key(unit, "StartLimitIntervalSec") == ["0"], name
        if name.endswith(".service") and "wakeup" not in name and "holder" not in name and "-crash@" not in name:
            assert key(unit, "WorkingDirectory") == ["/var/spool/postfix"], name
            assert key(unit, "UMask") == ["0077"], name
            assert key(unit, "SuccessExitStatus") == ["15"], name


def test_unit_names_are_valid(debian: UnitSet) -> None:
    pattern = re.compile(r"^[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]*)?\.(service|socket|timer|target|slice)$")
    assert all(pattern.match(n) for n in debian.units)
    assert len(debian.units) == 75  # 74 + the instance's crash@ template (crash back-off)


def test_build_is_deterministic() -> None:
    assert build(DEBIAN).units == build(DEBIAN).units


def test_parsed_entries_give_the_same_units() -> None:
    doc = MasterCf.parse(DEBIAN)
    assert build_units(doc.to_list(), Instance(), resolver=resolver).units == build(DEBIAN).units


# --------------------------------------------------------------------------- listeners


def test_wildcard_listens_on_both_families_like_master(debian: UnitSet) -> None:
    sock = debian.units["postfix-default-smtp-inet.socket"]
    assert key(sock, "ListenStream") == ["0.0.0.0:25", "[::]:25"]
    assert key(sock, "BindIPv6Only") == ["ipv6-only"]
    assert key(sock, "FreeBind") == []
    assert argv_of(debian, "smtp", "inet")[-2:] == ["-s", "2"]


def test_ipv4_only_has_one_listener_and_no_s() -> None:
    units = build("smtp inet n - y - - smtpd\n", inet_protocols="ipv4")
    assert key(units.units["postfix-default-smtp-inet.socket"], "ListenStream") == ["0.0.0.0:25"]
    assert "-s" not in argv_of(units, "smtp", "inet")


@pytest.mark.parametrize(
    ("service", "listen", "stress"),
    [
        ("127.0.0.1:10025", ["127.0.0.1:10025"], False),
        ("[::1]:25", ["[::1]:25"], False),
        ("localhost:2604", ["127.0.0.1:2604", "[::1]:2604"], False),
        ("mx.example:smtp", ["192.0.2.7:25", "[2001:db8::7]:25"], True),
        ("192.0.2.1:imap", ["192.0.2.1:143"], True),
    ],
)
def test_host_port_listeners(service: str, listen: list[str], stress: bool) -> None:
    units = build(f"{service} inet n - n - - smtpd\n")
    sock = units.units[f"postfix-default-{escape(service)}-inet.socket"]
    assert key(sock, "ListenStream") == listen
    assert key(sock, "FreeBind") == ["yes"]
    assert ("stress=" in argv_of(units, service, "inet")) is stress


def test_loopback_only_interfaces() -> None:
    units = build("smtp inet n - n - - smtpd\n", inet_interfaces="loopback-only", inet_protocols="ipv4")
    assert key(units.units["postfix-default-smtp-inet.socket"], "ListenStream") == ["127.0.0.1:25"]
    assert "stress=" not in argv_of(units, "smtp", "inet")


@pytest.mark.parametrize(
    ("entry", "path", "group", "mode", "listen_key"),
    [
        ("cleanup unix n - y - 0 cleanup", "/var/spool/postfix/public/cleanup", "postdrop", "0666", "ListenStream"),
        ("rewrite unix - - y - - trivial-rewrite", "/var/spool/postfix/private/rewrite", "postfix", "0666", "ListenStream"),
        ("pickup fifo n - y 60 1 pickup", "/var/spool/postfix/public/pickup", "postdrop", "0622", "ListenFIFO"),
        ("postlog unix-dgram n - n - 1 postlogd", "/var/spool/postfix/public/postlog", "postdrop", "0666", "ListenDatagram"),
        ("smtpd pass - - y - - smtpd", "/var/spool/postfix/private/smtpd", "postfix", "0666", "ListenStream"),
    ],
)
def test_local_listeners(entry: str, path: str, group: str, mode: str, listen_key: str) -> None:
    units = build(entry + "\n")
    sock = next(u for n, u in units.units.items() if n.endswith(".socket") and "holder" not in n)
    assert key(sock, listen_key) == [path]
    # Not SocketUser=/SocketGroup=: systemd would chown(2) a path in a directory mail_owner controls.
    assert key(sock, "SocketUser") == [] and key(sock, "SocketGroup") == []
    assert key(sock, "ExecStartPost") == [" ".join([*BRIDGE, "endpoint", "--owner", "postfix", "--group", group,
                                                    "--", path])]
    assert key(sock, "SocketMode") == [mode]
    assert bool(key(sock, "Backlog")) is (listen_key == "ListenStream")
    # Like master(8): whatever is at the name goes first, removed as mail_owner; nothing removed at stop.
    fifo = ["--fifo-mode", "0622"] if listen_key == "ListenFIFO" else []
    assert key(sock, "ExecStartPre") == [" ".join([*BRIDGE, "endpoint", *fifo, "--", path])]
    assert key(sock, "RemoveOnStop") == []


def test_endpoint_preparation_is_quoted_and_only_for_paths() -> None:
    units = build("smtp inet n - y - - smtpd\n"
                  "relay.x unix - - y - - smtpd\n", queue_directory="/var/spool/post fix%")
    inet = units.units["postfix-default-smtp-inet.socket"]
    assert key(inet, "ExecStartPre") == []
    sock = next(u for n, u in units.units.items() if n.endswith("-unix.socket"))
    assert key(sock, "ExecStartPre") == [" ".join([*BRIDGE, "endpoint", "--", '"/var/spool/post fix%%/private/relay.x"'])]


def test_pass_is_pool_and_never_local() -> None:
    units = build("smtpd pass - - y - - smtpd\n")
    assert units.services[0].mode == "pool"
    assert "stress=" in argv_of(units, "smtpd", "pass")


def test_fifo_pickup_uses_the_bridge() -> None:
    units = build("pickup fifo n - y 60 1 pickup\n")
    assert units.services[0].mode == "pool"
    assert "-S" not in argv_of(units, "pickup", "fifo")


# --------------------------------------------------------------------------- wakeup


def test_wakeup_timer(debian: UnitSet) -> None:
    timer = debian.units["postfix-default-pickup-unix-wakeup.timer"]
    assert key(timer, "OnUnitActiveSec") == ["60s"]
    assert key(timer, "OnActiveSec") == ["1s"]
    svc = debian.units["postfix-default-pickup-unix-wakeup.service"]
    assert key(svc, "ExecStart") == ["/usr/sbin/postkick public pickup W"]
    assert key(svc, "ExecCondition") == []
    assert key(svc, "User") == ["postfix"]


def test_conditional_wakeup_waits_for_first_use(debian: UnitSet) -> None:
    stamp = "/run/mailfleet-postfix/default/used/postfix-default-tlsmgr-unix"
    svc = debian.units["postfix-default-tlsmgr-unix-wakeup.service"]
    assert key(svc, "ExecCondition") == [f"/usr/bin/test -e {stamp}"]
    assert key(svc, "ExecStart") == ["/usr/sbin/postkick private tlsmgr W"]
    assert f"--stamp {stamp} " in key(debian.units["postfix-default-tlsmgr-unix.service"], "ExecStart")[0]
    # flush runs per connection: the stamp is written before each start.
    flush = debian.units["postfix-default-flush-unix@.service"]
    assert key(flush, "ExecStartPre") == ["+/usr/bin/touch /run/mailfleet-postfix/default/used/postfix-default-flush-unix"]


def test_zero_conditional_wakeup_is_no_wakeup() -> None:
    units = build("flush unix n - y 0? 0 flush\n")
    assert not [n for n in units.units if n.endswith(".timer")]


def test_inet_wakeup_uses_the_bridge_kick() -> None:
    units = build("127.0.0.1:8025 inet n - n 30 1 qmgr\n".replace("qmgr", "smtpd").replace(" 1 ", " - "))
    svc = units.units["postfix-default-127.0.0.1\\x3a8025-inet-wakeup.service"]
    assert key(svc, "ExecStart")[0].endswith("bridge kick --inet 127.0.0.1:8025")


def test_dgram_wakeup_warns_like_master() -> None:
    units = build("postlog unix-dgram n - n 60 1 postlogd\n")
    assert units.warnings and "unix-dgram" in units.warnings[0]
    assert not [n for n in units.units if n.endswith(".timer")]


# --------------------------------------------------------------------------- instances, disable, credentials


def test_secondary_instance_names_and_mail_config() -> None:
    units = build("cleanup unix n - y - 0 cleanup\n", name="postfix-out", config_directory="/etc/postfix-out",
                  queue_directory="/var/spool/postfix-out")
    assert "postfix-out.target" in units.units
    svc = units.units["postfix-out-cleanup-unix@.service"]
    assert '"MAIL_CONFIG=/etc/postfix-out"' in key(svc, "Environment")
    assert key(svc, "WorkingDirectory") == ["/var/spool/postfix-out"]
    assert "--holder /run/mailfleet-postfix/out/holder.sock" in key(svc, "ExecStart")[0]
    assert key(units.units["postfix-out.target"], "Conflicts") == ["postfix@postfix-out.service"]


def test_default_instance_has_no_mail_config(debian: UnitSet) -> None:
    assert key(debian.units["postfix-default-cleanup-unix@.service"], "Environment") == ["LANG=C"]


@pytest.mark.parametrize("disable", ["inet", "smtp/inet", "smtp.inet"])
def test_master_service_disable(disable: str) -> None:
    units = build(DEBIAN, master_service_disable=disable)
    assert "postfix-default-smtp-inet.socket" not in units.units
    assert "postfix-default-smtp-unix.socket" in units.units


def test_smtpd_starts_as_root_when_its_keys_need_it() -> None:
    text = "smtp inet n - y - - smtpd\n"
    owner = build(text, supplementary_groups=("ssl-cert",))
    svc = owner.units["postfix-default-smtp-inet@.service"]
    assert key(svc, "SupplementaryGroups") == ["ssl-cert"]
    root = build(text, root_daemons=("smtpd",))
    svc = root.units["postfix-default-smtp-inet@.service"]
    assert key(svc, "User") == []
    assert "-u" in argv_of(root, "smtp", "inet")
    assert "--lock" not in key(svc, "ExecStart")[0]


def test_sockets_reference_doubles_backslashes() -> None:
    units = build("scalemail-backend unix - n n - 2 pipe flags=R user=x argv=/bin/true\n")
    svc = units.units["postfix-default-scalemail\\x2dbackend-unix@.service"]
    assert key(svc, "Sockets") == ["postfix-default-scalemail\\\\x2dbackend-unix.socket"]
    sock = units.units["postfix-default-scalemail\\x2dbackend-unix.socket"]
    assert key(sock, "Service") == ["postfix-default-scalemail\\x2dbackend-unix@1.service"]


def test_lock_file_for_owner_pool_workers(debian: UnitSet) -> None:
    assert "--lock pid/inet.smtp " in key(debian.units["postfix-default-smtp-inet@.service"], "ExecStart")[0]
    assert "--lock" not in key(debian.units["postfix-default-qmgr-unix.service"], "ExecStart")[0]
    assert "--lock" not in key(debian.units["postfix-default-cleanup-unix@.service"], "ExecStart")[0]


def test_setsid_daemons_retire_through_the_holder(debian: UnitSet) -> None:
    for name in ("verify-unix.service", "proxywrite-unix.service"):
        stop = key(debian.units["postfix-default-" + name], "ExecStop")[0]
        assert stop.endswith("bridge retire --holder /run/mailfleet-postfix/default/holder.sock --pid $MAINPID")


def test_instance_units(debian: UnitSet) -> None:
    target = debian.units["postfix-default.target"]
    wants = key(target, "Wants")
    assert "postfix-default-holder.socket" in wants
    assert "postfix-default-pickup-unix-wakeup.timer" in wants
    assert key(target, "Conflicts") == ["postfix@-.service"]
    assert debian.links == {"multi-user.target.wants/postfix-default.target": "postfix-default.target"}
    holder = debian.units["postfix-default-holder.socket"]
    assert key(holder, "ListenSequentialPacket") == ["/run/mailfleet-postfix/default/holder.sock"]
    assert all(key(u, "Slice") == ["postfix-default.slice"] for n, u in debian.units.items()
               if n.endswith(".service"))


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("smtp inet n - y - - smtpd\nfoo unix - - y - - frobnicate\n", 2, ["frobnicate", "not a Postfix daemon"]),
        ("qmgr inet n - n 300 1 qmgr\n", 1, ["qmgr", "cannot serve type 'inet'"]),
        ("postlog unix n - n - 1 postlogd\n", 1, ["postlogd", "unix-dgram"]),
        ("cleanup unix n - y - 100 cleanup\n", 1, ["process limit of 0"]),
        ("qmgr unix n - n 300 5 qmgr\n", 1, ["process limit of 1"]),
        ("local unix - y n - - local\n", 1, ["privileged"]),
        ("smtp inet n - y - - smtpd\n127.0.0.1:smtp inet n - y - - smtpd\n", 2, ["port 25", "line 1"]),
        ("pickup unix n - y 60 1 pickup\npickup fifo n - y 60 1 pickup\n", 2, ["public/pickup"]),
        ("smtpd pass - - y 60 - smtpd\n", 1, ["wakeup", "pass"]),
        ("nowhere.invalid:25 inet n - n - - smtpd\n", 1, ["cannot resolve host"]),
        ("foo:gopherx inet n - n - - smtpd\n", 1, ["unknown TCP service 'gopherx'"]),
    ],
)
def test_refusals_name_the_line(text: str, line: int, words: list[str]) -> None:
    with pytest.raises(MasterCfError) as err:
        build(text)
    assert err.value.line == line
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("text", [
    "mailman unix - n n - - pipe flags=FR user=list argv=/bin/false\n#\nmailman unix - n n - - pipe flags=FR user=list argv=/bin/true\n",
    "smtp inet n - y - - smtpd -o x=1\n#\n25 inet n - y - - smtpd -o x=2\n",  # one service: smtp is port 25
])
def test_duplicates_run_the_last_entry_and_warn_with_both_lines(text: str) -> None:
    units = build(text)
    assert [s.line for s in units.services] == [3]
    assert units.services[0].argv[-1] in ("argv=/bin/true", "x=2")
    assert len(units.warnings) == 1
    assert "line 3" in units.warnings[0] and "line 1" in units.warnings[0]
    assert "uses the last one" in units.warnings[0]


def test_a_disabled_duplicate_does_not_hide_the_running_entry() -> None:
    text = "smtp inet n - y - - smtpd\n2525 inet n - y - - smtpd\n"
    units = build(text, master_service_disable="2525/inet")
    assert [s.line for s in units.services] == [1] and not units.warnings


def test_private_and_public_of_one_name_are_refused_not_merged() -> None:
    """Two services for master(8), but one unit name: refused rather than one silently replacing the other."""
    with pytest.raises(MasterCfError, match="line 2: .*units would have the names of the entry at line 1"):
        build("dup unix - - y - - error\ndup unix n - y - - error\n")


def test_a_service_name_with_a_slash_is_refused() -> None:
    with pytest.raises(MasterCfError, match="line 1: .*name with '/'"):
        build("a/x unix - - y - - error\n")


def test_ipv6_address_with_ipv4_only_protocols_is_refused() -> None:
    with pytest.raises(MasterCfError, match="no listen address"):
        build("[::1]:25 inet n - n - - smtpd\n", inet_protocols="ipv4")


def test_instance_from_params() -> None:
    inst = Instance.from_params({"multi_instance_name": "postfix-edge", "default_process_limit": "50",
                                 "queue_directory": "/var/spool/postfix-edge", "unknown": "x"},
                                supplementary_groups="ssl-cert")
    assert inst.short_name == "edge" and inst.prefix == "postfix-edge"
    assert inst.default_process_limit == 50
    assert inst.supplementary_groups == ("ssl-cert",)
    assert Instance.from_params({"multi_instance_name": ""}).short_name == "default"


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("::", "::"), ("0:0:0:0:0:0:0:1", "::1"),
        ("2001:DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:db8::7", "2001:db8::7"),
        ("fe80::1:2", "fe80::1:2"), ("::ffff:192.0.2.1", "::ffff:c000:201"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3"),
    ],
)
def test_ip_address_canonical(text: str, canonical: str) -> None:
    import ipaddress

    from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import ip_address

    assert ip_address(text).text == canonical == str(ipaddress.ip_address(text)).replace("::ffff:192.0.2.1", "::ffff:c000:201")


@pytest.mark.parametrize("bad", ["1.2.3", "256.1.1.1", "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "g::1", "", "localhost"])
def test_ip_address_rejects(bad: str) -> None:
    from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_semantics import ip_address

    with pytest.raises(ValueError):
        ip_address(bad)


# --------------------------------------------------------------------------- the chroot column


def _smtpd(units: UnitSet) -> str:
    return next(text for name, text in units.units.items() if "smtp-inet" in name and name.endswith(".service"))


@pytest.mark.parametrize("column", ["y", "n"])
def test_sandbox_mode_gives_every_chroot_value_the_kinds_sandbox(column: str) -> None:
    """_systemd_sandbox.CHROOT_RULES: in sandbox mode the column does not change the unit (docs/systemd.md)."""
    reference = build("smtp inet n - y - - smtpd\n")
    units = build(f"smtp inet n - {column} - - smtpd\n")
    assert _smtpd(units).replace("line 1", "") == _smtpd(reference).replace("line 1", "")
    assert "-c" not in units.services[0].argv and "ProtectSystem=strict" in _smtpd(units)


def test_postfix_mode_keeps_chroot_and_starts_smtpd_as_root() -> None:
    """chroot(2) needs root: an unpriv smtpd with chroot=y is not started as mail_owner, -c stays."""
    units = build("smtp inet n - y - - smtpd\n", chroot="postfix")
    service = units.services[0]
    assert "-c" in service.argv and "-u" in service.argv and service.run_as == "root"
    assert "CAP_SYS_CHROOT" in _smtpd(units) and "User=postfix" not in _smtpd(units)
    unjailed = build("smtp inet n - n - - smtpd\n", chroot="postfix").services[0]
    assert "-c" not in unjailed.argv and unjailed.run_as == "mail_owner"


def test_compatibility_level_postfix_cannot_parse_is_refused() -> None:
    with pytest.raises(MasterCfError, match="compatibility_level = 3.x: malformed"):
        build("smtp inet n - - - - smtpd\n", chroot="postfix", compatibility_level="3.x")


def test_description_doubles_percent_from_master_cf() -> None:
    """Description= expands specifiers: a '%' in a service name must stay a '%'."""
    assert unit_value("Description", "Postfix default: a%b") == "Postfix default: a%%b"
    with pytest.raises(MasterCfError, match="one unit file line"):
        unit_value("Description", "a\nExecStartPre=/bin/sh")


def test_scoped_service_name_is_refused_as_master_does() -> None:
    """master_ent.c -> host_port(): valid_ipv6_hostaddr() refuses '%': master(8) exits."""
    with pytest.raises(MasterCfError, match="valid hostname or network address required") as info:
        build_units("[fe80::1%eth0]:2525 inet n - n - 1 smtpd\n", Instance(inet_protocols="ipv6"),
                    resolver=lambda host: ["fe80::1%eth0"], port_resolver=ports)
    assert info.value.line == 1 and info.value.field_name == "service"


def test_scoped_inet_interfaces_is_refused_not_dropped() -> None:
    """The scope used to be cut off: systemd then binds fe80::1 without an interface (EINVAL) or elsewhere."""
    with pytest.raises(MasterCfError, match="IPv6 scope"):
        build_units("smtp inet n - n - 1 smtpd\n", Instance(inet_protocols="ipv6", inet_interfaces="fe80::1%eth0"),
                    resolver=lambda host: ["fe80::1%eth0"], port_resolver=ports)


@pytest.mark.parametrize("word", ["smtpd", "/usr/lib/postfix/sbin/smtpd", "-o", "syslog_name=postfix/submission",
                                  "a,b:c@d+e", "", ";", "a b", "50%", "$x", "it's", 'say "hi"', "a\\b", "tab\there",
                                  "m\u00fcnchen", "m\udcfcnchen", "x\x7f"])
def test_exec_quote_fast_path_agrees_with_the_escapes(word: str) -> None:
    """Words of plain characters are returned as they are; every other word is translated."""
    from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import _EXEC_ESCAPES

    text = word.translate(_EXEC_ESCAPES)
    want = "\\;" if text == ";" else f'"{text}"' if text == "" or " " in text else text
    assert exec_quote(word) == want


def test_the_crash_gate_is_made_once_per_instance_and_never_shared() -> None:
    from ansible_collections.mailfleet.postfix.plugins.module_utils._masterless_units import _crash_gate

    one, other = Instance(), Instance(service_throttle_time="10s")
    first = _crash_gate(one)
    first.append(("Extra", "x"))  # a caller's list of its own
    assert _crash_gate(one) == first[:-1]
    assert _crash_gate(other) != _crash_gate(one) and "sleep 10;" in _crash_gate(other)[0][1]


@pytest.mark.parametrize(("value", "ok"), [("plain", True), ("a\\", False), ("a\\\\", True), ("tab\there", True),
                                           ("a\rb", False), ("nul\0", False), ("caf\u00e9", True), ("x\udcfc", False)])
def test_unit_value_fast_path_keeps_the_rules(value: str, ok: bool) -> None:
    if ok:
        assert unit_value("ExecStart", value) == value
    else:
        with pytest.raises(MasterCfError):
            unit_value("ExecStart", value)
