# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The malformed-input catalogue: every entry point refuses bad input with one clear message.

One table per kind of entry point (filters, modules on a config directory, modules' arguments, the
master-less module on a fake host, the roles' argument specs). Each case has an id, the input and a
fragment the refusal must contain: the file, the line and the field where there is one. A refusal
is the entry point's own error (AnsibleFilterError, a failed module result, an argument spec error);
any other exception is a traceback and fails the case, and so does an input that is accepted. A
refused module run leaves every file byte-identical and no temporary file behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml  # type: ignore[import-untyped]
from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.mailfleet.postfix.plugins.filter.master_cf import (
    master_cf_entry,
    master_cf_parse,
    master_cf_render,
)
from ansible_collections.mailfleet.postfix.plugins.filter.master_cf_chroot_plan import master_cf_chroot_plan
from ansible_collections.mailfleet.postfix.plugins.filter.master_cf_units import master_cf_units
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.postfix_env import (
    ConfigDir,
    make_config_dir,
    run_module,
)

# env is the systemd_units fixture (a fake host under tmp_path).
from ansible_collections.mailfleet.postfix.tests.unit.plugins.modules.test_systemd_units import (  # noqa: F401  # pylint: disable=unused-import
    Env,
    env,
    have_postfix_user,
)

ROOT = Path(__file__).resolve().parents[3]
SMTP = "smtp      inet  n       -       y       -       -       smtpd\n"
ENTRY = {"service": "relay2", "type": "unix", "command": "smtp"}
MAIN = {"compatibility_level": "3.6", "queue_directory": "/var/spool/postfix"}
HUGE = "99999999999999999999"

# --------------------------------------------------------------------------- filters

FILTERS: dict[str, Callable[..., Any]] = {
    "master_cf_parse": master_cf_parse,
    "master_cf_render": master_cf_render,
    "master_cf_entry": master_cf_entry,
    "master_cf_units": master_cf_units,
    "master_cf_chroot_plan": master_cf_chroot_plan,
}

# (id, filter, positional arguments, fragment of the refusal)
FILTER_CASES: list[tuple[str, str, tuple[Any, ...], str]] = [
    # the review's cases
    ("units-line-x", "master_cf_units", ([{**ENTRY, "line": "x"}],), "'line' is 'x', expected a line number"),
    ("render-line-x", "master_cf_render", ([{**ENTRY, "line": "x"}],), "item 0: 'line' is 'x', expected a line number"),
    ("entry-line-x", "master_cf_entry", ({**ENTRY, "line": "x"},), "'line' is 'x', expected a line number"),
    ("plan-line-x", "master_cf_chroot_plan", ([{**ENTRY, "line": "x"}],), "'line' is 'x', expected a line number"),
    ("units-options-list", "master_cf_units", ([{**ENTRY, "options": ["a=b"]}],),
     "'options' must be a mapping of parameter name to value"),
    ("entry-options-list", "master_cf_entry", ({**ENTRY, "options": ["a=b"]},), "'options' must be a mapping"),
    ("render-options-list", "master_cf_render", ([{**ENTRY, "options": ["a=b"]}],), "'options' must be a mapping"),
    ("units-host-a..b", "master_cf_units", ("a..b:25 inet n - y - - smtpd\n",),
     "master.cf line 1: 'a..b:25 inet': cannot resolve host 'a..b'"),
    ("units-nul-in-o", "master_cf_units", ("relay2 unix - - y - - smtp -o a=b\0c\n",), "master.cf line 1: a NUL byte"),
    ("parse-nul-in-o", "master_cf_parse", (SMTP + "relay2 unix - - y - - smtp\n  -o a=b\0c\n",),
     "master.cf line 3: a NUL byte"),
    ("entry-nul-in-o", "master_cf_entry", ({**ENTRY, "options": {"a": "b\0c"}},),
     "option 'a' value 'b\\x00c' contains a NUL byte"),
    ("parse-maxproc-huge", "master_cf_parse", (SMTP + f"relay2 unix - - y - {HUGE} smtp\n",),
     f"master.cf line 2: field 'maxproc' is '{HUGE}'; expected at most 2147483647"),
    ("units-maxproc-huge", "master_cf_units", (f"relay2 unix - - y - {HUGE} smtp\n",),
     "line 1: field 'maxproc'"),
    ("units-wakeup-huge", "master_cf_units", (f"pickup unix n - y {HUGE} 1 pickup\n",),
     f"line 1: field 'wakeup' is '{HUGE}'"),
    ("units-wakeup-huge-cond", "master_cf_units", ("pickup unix n - y 2147483648? 1 pickup\n",),
     "line 1: field 'wakeup' is '2147483648?'"),
    ("entry-maxproc-huge", "master_cf_entry", ({**ENTRY, "maxproc": int(HUGE)},), "field 'maxproc'"),
    ("plan-maxproc-huge", "master_cf_chroot_plan", (f"relay2 unix - - y - {HUGE} smtp\n", MAIN),
     "line 1: field 'maxproc'"),
    ("entry-service-dash", "master_cf_entry", ({**ENTRY, "service": "-"},), "field 'service' is '-'"),
    ("render-service-dash", "master_cf_render", ([{**ENTRY, "service": "-"}],), "field 'service' is '-'"),
    ("entry-service-newline", "master_cf_entry", ({**ENTRY, "service": "relay2\n"},),
     "field 'service' is 'relay2\\n'"),
    ("entry-value-brace", "master_cf_entry", ({**ENTRY, "options": {"a": "} {"}},),
     "option 'a' value '} {' has unbalanced braces"),
    ("entry-arg-brace", "master_cf_entry", ({**ENTRY, "args": ["} {"]},), "argument '} {' has unbalanced braces"),
    ("units-args-string", "master_cf_units", ([{**ENTRY, "args": "abc"}],), "'args' must be a list of arguments"),
    ("entry-args-string", "master_cf_entry", ({**ENTRY, "args": "abc"},), "'args' must be a list of arguments"),
    ("plan-shadow", "master_cf_chroot_plan", (SMTP, MAIN, None, ["/etc/shadow"]),
     "extra file '/etc/shadow' holds secrets"),
    ("plan-gshadow", "master_cf_chroot_plan", (SMTP, MAIN, None, ["/etc/gshadow"]), "holds secrets"),
    ("plan-ssl-private", "master_cf_chroot_plan", (SMTP, MAIN, None, ["/etc/ssl/private/mail.key"]), "holds secrets"),
    ("plan-ssh-host-key", "master_cf_chroot_plan", (SMTP, MAIN, None, ["/etc/ssh/ssh_host_ed25519_key"]),
     "holds secrets"),
    ("plan-shadow-dotted", "master_cf_chroot_plan", (SMTP, MAIN, None, ["/etc/./shadow"]), "holds secrets"),
    # fields and values of entry dicts
    ("entry-maxproc-newline", "master_cf_entry", ({**ENTRY, "maxproc": "1\n"},), "field 'maxproc' is '1\\n'"),
    ("entry-wakeup-newline", "master_cf_entry", ({**ENTRY, "wakeup": "60\n"},), "field 'wakeup' is '60\\n'"),
    ("entry-wakeup-negative", "master_cf_entry", ({**ENTRY, "wakeup": -5},), "field 'wakeup' is '-5'"),
    ("entry-maxproc-bool", "master_cf_entry", ({**ENTRY, "maxproc": True},), "field 'maxproc'"),
    ("entry-type-newline", "master_cf_entry", ({**ENTRY, "type": "unix\n"},), "field 'type' is 'unix\\n'"),
    ("entry-type-unknown", "master_cf_entry", ({**ENTRY, "type": "tcp"},), "field 'type' is 'tcp'"),
    ("entry-private-list", "master_cf_entry", ({**ENTRY, "private": ["y"]},), "field 'private'"),
    ("entry-chroot-maybe", "master_cf_entry", ({**ENTRY, "chroot": "maybe"},), "field 'chroot' is 'maybe'"),
    ("entry-inet-private", "master_cf_entry", ({**ENTRY, "type": "inet", "service": "2525", "private": "y"},),
     "inet services cannot be private"),
    ("entry-command-newline", "master_cf_entry", ({**ENTRY, "command": "smtp\nx"},), "field 'command' is 'smtp\\nx'"),
    ("entry-command-space", "master_cf_entry", ({**ENTRY, "command": "smtp x"},), "field 'command' is 'smtp x'"),
    ("entry-command-option", "master_cf_entry", ({**ENTRY, "command": "-v"},), "field 'command' is '-v'"),
    ("entry-command-missing", "master_cf_entry", ({"service": "relay2", "type": "unix"},), "field 'command'"),
    ("entry-service-list", "master_cf_entry", ({**ENTRY, "service": ["a"]},), "field 'service'"),
    ("entry-service-dotdot", "master_cf_entry", ({**ENTRY, "service": "../x"},), "field 'service' is '../x'"),
    ("entry-service-absolute", "master_cf_entry", ({**ENTRY, "service": "/tmp/x"},), "field 'service' is '/tmp/x'"),
    ("entry-inet-bad-host", "master_cf_entry", ({**ENTRY, "type": "inet", "service": "a b:25"},),
     "field 'service' is 'a b:25'"),
    ("entry-arg-nul", "master_cf_entry", ({**ENTRY, "args": ["a\0"]},), "argument 'a\\x00' contains a NUL byte"),
    ("entry-arg-newline", "master_cf_entry", ({**ENTRY, "args": ["a\nb"]},), "contains a line break"),
    ("entry-arg-nested", "master_cf_entry", ({**ENTRY, "args": [["a"]]},), "'args' must be a list of strings"),
    ("entry-option-name-newline", "master_cf_entry", ({**ENTRY, "options": {"a\n": "b"}},),
     "option name 'a\\n' is not a Postfix parameter name"),
    ("entry-option-name-empty", "master_cf_entry", ({**ENTRY, "options": {"": "b"}},), "option name ''"),
    ("entry-option-mapping", "master_cf_entry", ({**ENTRY, "options": {"a": {"b": 1}}},), "not a mapping"),
    ("entry-option-list-of-maps", "master_cf_entry", ({**ENTRY, "options": {"a": [{"b": 1}]}},),
     "a list value must hold strings or numbers only"),
    ("entry-option-cr", "master_cf_entry", ({**ENTRY, "options": {"a": "b\rc"}},), "contains a line break"),
    ("entry-unknown-key", "master_cf_entry", ({**ENTRY, "bogus": 1},), "unknown entry keys: bogus"),
    ("entry-enabled-string", "master_cf_entry", ({**ENTRY, "enabled": "no"},), "'enabled' is 'no', expected a boolean"),
    ("entry-kind-bogus", "master_cf_entry", ({**ENTRY, "kind": "other"},), "'kind' is 'other'"),
    ("entry-not-mapping", "master_cf_entry", ("relay2",), "expects an entry dict, got str"),
    # master.cf text
    ("parse-bytes", "master_cf_parse", (b"x",), "expects master.cf text, got bytes"),
    ("parse-missing-fields", "master_cf_parse", ("relay2 unix - - y\n",), "master.cf line 1: field 'wakeup' is missing"),
    ("parse-bad-private", "master_cf_parse", ("relay2 unix x - y - - smtp\n",), "master.cf line 1: field 'private' is 'x'"),
    ("parse-open-brace", "master_cf_parse", ("relay2 unix - - y - - smtp { a\n",), "master.cf line 1: missing '}'"),
    ("parse-o-without-value", "master_cf_parse", ("relay2 unix - - y - - smtp -o\n",),
     "master.cf line 1: '-o' without a value"),
    ("parse-o-without-equals", "master_cf_parse", ("relay2 unix - - y - - smtp -o ab\n",),
     "master.cf line 1: missing '=' after attribute name"),
    ("parse-strict-duplicate", "master_cf_parse", (SMTP + SMTP, True), "master.cf line 2: duplicate entry"),
    ("parse-strict-continuation", "master_cf_parse", ("  -o a=b\n" + SMTP, True),
     "master.cf line 1: continuation line before any entry"),
    ("parse-maxproc-negative", "master_cf_parse", ("relay2 unix - - y - -1 smtp\n",), "line 1: field 'maxproc' is '-1'"),
    # master_cf_render items
    ("render-string", "master_cf_render", ("x",), "expects a list of items from master_cf_parse, got str"),
    ("render-item-string", "master_cf_render", (["abc"],), "item 0 is a str, expected a mapping"),
    ("render-text-without-raw", "master_cf_render", ([{"kind": "text", "raw": 5}],), "item 0 is a text item"),
    ("render-raw-two-entries", "master_cf_render",
     ([{"kind": "entry", "raw": "a unix - - y - - smtp\nb unix - - y - - smtp\n", "service": "a", "type": "unix"}],),
     "item 0: 'raw' must hold exactly one entry"),
    ("render-edit-maxproc-huge", "master_cf_render",
     ([{"kind": "entry", "raw": "relay2 unix - - y - - smtp\n", "service": "relay2", "type": "unix", "command": "smtp",
        "maxproc": HUGE}],), "field 'maxproc'"),
    # master_cf_units inputs
    ("units-raw-int", "master_cf_units", ([{"kind": "entry", "raw": 5, "line": 3}],),
     "master.cf line 3: 'raw' is a int"),
    ("units-fields-no-command", "master_cf_units", ([{"service": "relay2", "type": "unix", "line": 4}],),
     "master.cf line 4: field 'command' is missing"),
    ("units-item-string", "master_cf_units", (["relay2"],), "expected a master.cf entry (mapping), got str"),
    ("units-data-int", "master_cf_units", (42,), "expects master.cf text"),
    ("units-instance-string", "master_cf_units", (SMTP, "postfix-out"), "'instance' must be a mapping"),
    ("units-instance-list-value", "master_cf_units", (SMTP, {"queue_directory": ["a"]}),
     "instance fact 'queue_directory' is a list"),
    ("units-instance-relative", "master_cf_units", (SMTP, {"queue_directory": "spool"}),
     "instance fact 'queue_directory' is 'spool'; expected an absolute path"),
    ("units-instance-limit", "master_cf_units", (SMTP, {"default_process_limit": "abc"}),
     "instance fact 'default_process_limit' is 'abc'; expected a number"),
    ("units-instance-newline", "master_cf_units", (SMTP, {"mail_owner": "postfix\nroot"}), "a line break or NUL"),
    ("units-instance-dotdot", "master_cf_units", (SMTP, {"multi_instance_name": "postfix-.."}), "postfix-.."),
    ("units-inet-protocols", "master_cf_units", (SMTP, {"inet_protocols": "ipv5"}),
     "inet_protocols = ipv5: unknown value 'ipv5'"),
    ("units-unknown-daemon", "master_cf_units", ("relay2 unix - - y - - frobnicate\n",),
     "master.cf line 1: 'relay2 unix': daemon 'frobnicate'"),
    # master_cf_chroot_plan inputs
    ("plan-data-int", "master_cf_chroot_plan", (5,), "expects master.cf text"),
    ("plan-main-list", "master_cf_chroot_plan", (SMTP, ["a"]), "'main' must be main.cf text or a mapping"),
    ("plan-main-text-bad", "master_cf_chroot_plan", (SMTP, "not a parameter\n"), "main.cf line 1: 'not a parameter'"),
    ("plan-main-text-nul", "master_cf_chroot_plan", (SMTP, "biff = no\nmyhostname = a\0b\n"),
     "main.cf line 2: a NUL byte"),
    ("plan-host-string", "master_cf_chroot_plan", (SMTP, MAIN, "debian"), "'host' must be a mapping"),
    ("plan-host-unknown", "master_cf_chroot_plan", (SMTP, MAIN, {"bogus": 1}), "unknown host facts: bogus"),
    ("plan-host-needed-list", "master_cf_chroot_plan", (SMTP, MAIN, {"needed": ["a"]}),
     "host fact 'needed' is a list"),
    ("plan-host-files-int", "master_cf_chroot_plan", (SMTP, MAIN, {"files": 5}), "host fact 'files' is a int"),
    ("plan-host-lib-dirs-pairs", "master_cf_chroot_plan", (SMTP, MAIN, {"lib_dirs": [["/lib", ["a"], "x"]]}),
     "master_cf_chroot_plan: "),
    ("plan-host-syslog", "master_cf_chroot_plan", (SMTP, MAIN, {"syslog": "klog"}), "host fact 'syslog' is 'klog'"),
    ("plan-extra-string", "master_cf_chroot_plan", (SMTP, MAIN, None, "/etc/mailname"),
     "'extra_files' must be a list of absolute paths"),
    ("plan-extra-relative", "master_cf_chroot_plan", (SMTP, MAIN, None, ["etc/mailname"]),
     "extra file 'etc/mailname' must be an absolute path"),
    ("plan-extra-escape", "master_cf_chroot_plan", (SMTP, MAIN, None, ["/etc/../var/mail"]),
     "would land in var/ inside the jail"),
    ("plan-extra-nul", "master_cf_chroot_plan", (SMTP, MAIN, None, ["/etc/a\0b"]), "extra file '/etc/a\\x00b'"),
    ("plan-extra-int", "master_cf_chroot_plan", (SMTP, MAIN, None, [5]), "extra file 5 must be an absolute path"),
]


@pytest.mark.parametrize(("name", "args", "fragment"), [c[1:] for c in FILTER_CASES], ids=[c[0] for c in FILTER_CASES])
def test_filter_refuses(name: str, args: tuple[Any, ...], fragment: str) -> None:
    with pytest.raises(AnsibleFilterError) as info:  # any other exception is a traceback: the case fails
        FILTERS[name](*args)
    message = str(info.value)
    assert message.startswith(f"{name}"), message
    assert fragment in message, message
    assert "\n" not in message and "\0" not in message, "a refusal is one line"


# --------------------------------------------------------------------------- modules on a config directory

# (id, module, arguments, main.cf or master.cf replaced by these bytes, fragment; {master}/{main} = the paths)
CONFIG_CASES: list[tuple[str, str, dict[str, Any], dict[str, bytes], str]] = [
    ("postconf-name-newline", "postconf", {"settings": {"myhostname\n": "x"}}, {},
     "{main}: 'myhostname\\n' is not a valid parameter name"),
    ("postconf-value-nul", "postconf", {"settings": {"myhostname": "a\0b"}}, {},
     "{main}: parameter 'myhostname': a main.cf value cannot contain a NUL byte"),
    ("postconf-value-newline", "postconf", {"settings": {"myhostname": "a\nb"}}, {}, "cannot contain a newline"),
    ("postconf-value-mapping", "postconf", {"settings": {"myhostname": {"a": 1}}}, {}, "not a mapping"),
    ("postconf-list-of-mappings", "postconf", {"settings": {"mynetworks": [{"a": 1}]}}, {}, "not a mapping"),
    ("postconf-name-empty", "postconf", {"settings": {"": "x"}}, {}, "'' is not a valid parameter name"),
    ("postconf-name-space", "postconf", {"settings": {"my hostname": "x"}}, {}, "'my hostname' is not a valid"),
    ("postconf-settings-list", "postconf", {"settings": ["myhostname=x"]}, {}, "settings"),
    ("postconf-backup-string", "postconf", {"settings": {}, "backup": "maybe"}, {}, "backup"),
    ("postconf-main-cf-nul", "postconf", {"settings": {"biff": False}}, {"main.cf": b"biff = yes\nx = a\0b\n"},
     "{main} line 2: a NUL byte"),
    ("postconf-main-cf-no-equals", "postconf", {"settings": {"biff": False}}, {"main.cf": b"biff = yes\nbroken\n"},
     "{main} line 2: 'broken' has no '='"),
    ("master-maxproc-huge", "master", {"service": "smtp", "type": "inet", "maxproc": HUGE}, {},
     f"{{master}}: field 'maxproc' is '{HUGE}'"),
    ("master-wakeup-huge", "master", {"service": "pickup", "type": "unix", "wakeup": HUGE}, {},
     f"{{master}}: field 'wakeup' is '{HUGE}'"),
    ("master-option-nul", "master", {"service": "smtp", "type": "inet", "options": {"a": "b\0c"}}, {},
     "option 'a' value 'b\\x00c' contains a NUL byte"),
    ("master-option-brace", "master", {"service": "smtp", "type": "inet", "options": {"a": "} {"}}, {},
     "option 'a' value '} {' has unbalanced braces"),
    ("master-service-dash", "master", {"service": "-", "type": "unix", "command": "smtp"}, {},
     "field 'service' is '-'"),
    ("master-service-newline", "master", {"service": "relay2\n", "type": "unix", "command": "smtp"}, {},
     "field 'service' is 'relay2\\n'"),
    ("master-options-list", "master", {"service": "smtp", "type": "inet", "options": ["a=b"]}, {}, "options"),
    ("master-args-with-brace", "master", {"service": "smtp", "type": "inet", "args": ["{"]}, {},
     "argument '{' has unbalanced braces"),
    ("master-entries-index", "master",
     {"entries": [{"service": "smtp", "type": "inet"}, {"service": "pickup", "type": "unix", "maxproc": HUGE}]}, {},
     "{master}: entries[1] (pickup/unix): field 'maxproc'"),
    # ansible-core's own message for a list element that is not a mapping does not name the option
    ("master-entries-not-dicts", "master", {"entries": ["smtp"]}, {}, "dictionary requested"),
    ("master-unknown-argument", "master", {"service": "smtp", "type": "inet", "bogus": 1}, {}, "bogus"),
    ("master-type-choice", "master", {"service": "smtp", "type": "tcp"}, {}, "value of type must be one of"),
    ("master-nul-in-file", "master", {"service": "smtp", "type": "inet", "maxproc": 5},
     {"master.cf": b"smtp inet n - y - - smtpd\npickup unix n - y 60 1 pickup -o a=\0\n"}, "{master} line 2: a NUL byte"),
    ("master-huge-in-file", "master", {"service": "smtp", "type": "inet", "maxproc": 5},
     {"master.cf": f"smtp inet n - y - - smtpd\npickup unix n - y 60 {HUGE} pickup\n".encode()},
     "{master} line 2: field 'maxproc'"),
    ("master-info-nul", "master_info", {}, {"master.cf": b"smtp inet n - y - - smtpd -o a=\0\n"},
     "{master} line 1: a NUL byte"),
    ("master-info-wakeup-huge", "master_info", {}, {"master.cf": b"pickup unix n - y 4294967296 1 pickup\n"},
     "{master} line 1: field 'wakeup' is '4294967296'"),
    ("master-info-main-nul", "master_info", {}, {"main.cf": b"biff = no\0\n"}, "{main} line 1: a NUL byte"),
    ("master-info-config-dir-list", "master_info", {"config_dir": ["a"]}, {}, "config_dir"),
]


def _tree(base: Path) -> dict[str, bytes]:
    """Every file below base (config dir, queue, meta, the module's remote tmp) with its bytes."""
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("module", "args", "files", "fragment"), [c[1:] for c in CONFIG_CASES],
                         ids=[c[0] for c in CONFIG_CASES])
def test_module_refuses_and_writes_nothing(tmp_path: Path, module: str, args: dict[str, Any],
                                           files: dict[str, bytes], fragment: str) -> None:
    conf: ConfigDir = make_config_dir(tmp_path)
    for name, data in files.items():
        (conf.path / name).write_bytes(data)
        os.utime(conf.path / name, (1_600_000_000, 1_600_000_000))
    before, stamps = _tree(tmp_path), conf.snapshot()
    for check in (True, False):
        result = run_module(module, {"config_dir": str(conf.path), **args}, tmp=tmp_path, check=check)
        assert result.get("failed"), f"accepted: {result}"
        message = str(result["msg"])
        assert fragment.replace("{master}", str(conf.master)).replace("{main}", str(conf.main)) in message, message
        assert "Traceback" not in message and "\n" not in message.rstrip("\n")
        assert conf.snapshot() == stamps, "a refused run touched main.cf or master.cf"
        assert _tree(tmp_path) == before, "a refused run left a file behind"


# --------------------------------------------------------------------------- arguments of the host modules

# Refused by the argument spec or by the module before it reads or writes anything.
PRIVATE_KEY = "private.key"  # created 0600 below tmp_path
ARGUMENT_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("chroot-extra-shadow", "chroot", {"extra_files": ["/etc/shadow"]}, "extra_files: /etc/shadow is not world-readable"),
    ("chroot-extra-gshadow", "chroot", {"extra_files": ["/etc/gshadow"]}, "/etc/gshadow is not world-readable"),
    ("chroot-extra-private-key", "chroot", {"extra_files": [PRIVATE_KEY]}, "is not world-readable (mode 0600)"),
    ("chroot-extra-files-dict", "chroot", {"extra_files": {"a": 1}}, "extra_files"),
    ("chroot-verify-timeout-text", "chroot", {"verify_timeout": "soon"}, "verify_timeout"),
    ("chroot-state-choice", "chroot", {"state": "synced"}, "value of state must be one of"),
    ("chroot-unknown-key", "chroot", {"bogus": True}, "bogus"),
    ("instance-unit-state-choice", "instance_unit", {"state": "running"}, "value of state must be one of"),
    ("instance-unit-enabled-text", "instance_unit", {"enabled": "sometimes"}, "enabled"),
    ("instance-unit-unknown-key", "instance_unit", {"jail_dir": "/x"}, "jail_dir"),
    ("systemd-units-mode-choice", "systemd_units", {"mode": "both"}, "value of mode must be one of"),
    ("systemd-units-factor-text", "systemd_units", {"max_use_factor": "many"}, "max_use_factor"),
    ("systemd-units-timeout-list", "systemd_units", {"timeout": [1]}, "timeout"),
    ("systemd-units-chroot-choice", "systemd_units", {"chroot": "jail"}, "value of chroot must be one of"),
    ("instance-name-missing", "instance", {}, "missing required arguments: name"),
    ("instance-state-choice", "instance", {"name": "postfix-out", "state": "running"}, "value of state must be one of"),
    ("instance-listen-mapping", "instance", {"name": "postfix-out", "listen": {"a": 1}}, "listen"),
    ("instance-wrapper-choice", "instance", {"name": "postfix-out", "multi_instance_wrapper": "x"},
     "value of multi_instance_wrapper must be one of"),
    ("postconf-settings-missing", "postconf", {}, "missing required arguments: settings"),
    ("master-service-without-type", "master", {"service": "smtp"}, "parameters are required together: service, type"),
    ("master-entries-and-service", "master", {"entries": [], "service": "smtp", "type": "inet"},
     "parameters are mutually exclusive"),
]


@pytest.mark.parametrize(("module", "args", "fragment"), [c[1:] for c in ARGUMENT_CASES],
                         ids=[c[0] for c in ARGUMENT_CASES])
def test_module_arguments_are_refused(tmp_path: Path, module: str, args: dict[str, Any], fragment: str) -> None:
    key = tmp_path / PRIVATE_KEY
    key.write_text("secret\n")
    key.chmod(0o600)
    args = {k: ([str(key) if v == PRIVATE_KEY else v for v in val] if k == "extra_files" and isinstance(val, list)
                else val) for k, val in args.items()}
    before = _tree(tmp_path)
    result = run_module(module, args, tmp=tmp_path)
    assert result.get("failed"), f"accepted: {result}"
    assert fragment in str(result["msg"]), result["msg"]
    assert {k: v for k, v in _tree(tmp_path).items() if not k.startswith("remote_tmp")} == before


def test_private_extra_file_is_copied_when_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """allow_private_extra_files passes the argument check (the run then goes on to postconf)."""
    from ansible_collections.mailfleet.postfix.plugins.module_utils import _host

    key = tmp_path / PRIVATE_KEY
    key.write_text("secret\n")
    key.chmod(0o640)

    def postconf_x(*args: Any, **kwargs: Any) -> dict[str, str]:
        raise _host.CommandError("reached postconf")

    monkeypatch.setattr(_host, "postconf_x", postconf_x)
    (tmp_path / "master.cf").write_text(SMTP)
    result = run_module("chroot", {"config_dir": str(tmp_path), "extra_files": [str(key)],
                                   "allow_private_extra_files": True}, tmp=tmp_path)
    assert result["msg"] == "reached postconf"


# --------------------------------------------------------------------------- systemd_units on a fake host

UNITS_CASES: list[tuple[str, bytes, str]] = [
    ("maxproc-huge", f"relay2 unix - - n - {HUGE} smtp\n".encode(), "line 1: field 'maxproc'"),
    ("wakeup-huge", f"pickup unix n - n {HUGE} 1 pickup\n".encode(), "line 1: field 'wakeup'"),
    ("nul-in-o-value", b"relay2 unix - - n - - smtp\n  -o a=\0b\n", "line 2: a NUL byte"),
    ("host-a..b", b"a..b:2525 inet n - n - - smtpd\n", "line 1: 'a..b:2525 inet': cannot resolve host 'a..b'"),
    ("open-brace", b"relay2 unix - - n - - smtp { x\n", "line 1: missing '}'"),
    ("unknown-daemon", b"relay2 unix - - n - - smtptd\n", "line 1: 'relay2 unix': daemon 'smtptd'"),
]


@pytest.mark.skipif(not have_postfix_user(), reason="mail_owner 'postfix' must exist")
@pytest.mark.parametrize(("master", "fragment"), [c[1:] for c in UNITS_CASES], ids=[c[0] for c in UNITS_CASES])
def test_systemd_units_refuses_and_writes_nothing(env: Env, master: bytes, fragment: str) -> None:  # noqa: F811
    (env.config / "master.cf").write_bytes(master)
    before = env.snapshot()
    for check in (True, False):
        out = env.run(check=check)
        assert out.get("failed"), f"accepted: {out}"
        assert out["msg"].startswith("nothing changed: ") and fragment in out["msg"], out["msg"]
        assert str(env.config / "master.cf") in out["msg"]
        assert env.snapshot() == before and env.host.mutating() == []


# --------------------------------------------------------------------------- roles' argument specs


def _validate(role: str, entry_point: str, values: dict[str, Any]) -> list[str]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"][entry_point]["options"]
    result = ArgumentSpecValidator(options).validate(values)
    return [str(e) for e in result.errors]


REQUIRED = {"edge": {"postfix_edge_domains": ["example.org"]}, "delivery": {}, "instance": {}}
ROLE_CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    ("instance-orchestrator", "instance", "main", {"postfix_orchestrator": "both"},
     "value of postfix_orchestrator must be one of: master, systemd"),
    ("instance-main-cf-list", "instance", "main", {"postfix_main_cf": ["myhostname=x"]}, "postfix_main_cf"),
    ("instance-master-cf-string", "instance", "main", {"postfix_master_cf": "smtp inet"}, "postfix_master_cf"),
    ("instance-extra-files-dict", "instance", "main", {"postfix_chroot_extra_files": {"a": 1}},
     "postfix_chroot_extra_files"),
    ("instance-factor-text", "instance", "main", {"postfix_masterless_max_use_factor": "many"},
     "postfix_masterless_max_use_factor"),
    ("instance-role-state-choice", "instance", "main", {"postfix_service_state": "running"},
     "value of postfix_service_state must be one of"),
    ("instance-unknown-option", "instance", "main", {"postfix_instnace_name": "postfix-out"}, "postfix_instnace_name"),
    ("edge-domains-missing", "edge", "main", {"postfix_edge_domains": None}, "postfix_edge_domains"),
    ("edge-relay-port-text", "edge", "main", {"postfix_edge_relay_port": "smtp"}, "postfix_edge_relay_port"),
    ("edge-local-recipients", "edge", "main", {"postfix_edge_local_recipients": "accept"},
     "value of postfix_edge_local_recipients must be one of"),
    ("edge-postscreen-text", "edge", "preflight", {"postfix_edge_postscreen": "sometimes"}, "postfix_edge_postscreen"),
    ("edge-probe-timeout", "edge", "probe", {"postfix_probe_timeout": [1]}, "postfix_probe_timeout"),
    ("delivery-mailbox", "delivery", "main", {"postfix_delivery_mailbox": "mh"},
     "value of postfix_delivery_mailbox must be one of: mbox, maildir"),
    ("delivery-users-mapping", "delivery", "main", {"postfix_delivery_users": {"a": 1}}, "postfix_delivery_users"),
    ("delivery-backup-text", "delivery", "preflight", {"postfix_backup": "maybe"}, "postfix_backup"),
]


@pytest.mark.parametrize(("role", "entry_point", "values", "fragment"), [c[1:] for c in ROLE_CASES],
                         ids=[c[0] for c in ROLE_CASES])
def test_role_argument_spec_refuses(role: str, entry_point: str, values: dict[str, Any], fragment: str) -> None:
    assert _validate(role, entry_point, dict(REQUIRED[role])) == [], "the base values must be valid"
    errors = _validate(role, entry_point, {**REQUIRED[role], **values})
    assert any(fragment in e for e in errors), errors


def test_catalogue_size() -> None:
    cases: list[tuple[Any, ...]] = [*FILTER_CASES, *CONFIG_CASES, *ARGUMENT_CASES, *UNITS_CASES, *ROLE_CASES]
    assert len(cases) >= 80 and len({c[0] for c in cases}) == len(cases)
