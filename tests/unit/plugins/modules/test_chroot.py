"""mailfleet.postfix.chroot against a real jail in a temporary directory laid out like a queue directory.

Only postconf is replaced (the temp queue directory is not a configured instance); the host probe,
the copies, the manifest and the lookups from inside the jail are real. Needs root (it chowns and
chroots); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from ansible.module_utils import basic

from ansible_collections.mailfleet.postfix.plugins.module_utils import _classic_jail, _classic_jail_sync, _host
from ansible_collections.mailfleet.postfix.plugins.modules import chroot as module
from ansible_collections.mailfleet.postfix.tests import fixture_files

ROOT = Path(__file__).resolve().parents[4]
DEBIAN = (ROOT / "tests/unit/plugins/module_utils/fixtures/debian-master.cf").read_text()
OWNER = "nobody"
LIB = "lib/x86_64-linux-gnu/"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, chroot)"),
    pytest.mark.skipif(not os.path.isdir("/lib/x86_64-linux-gnu"), reason="needs a Debian-like amd64 host"),
]


class Exit(Exception):
    def __init__(self, result: dict[str, Any], failed: bool) -> None:
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


@pytest.fixture(autouse=True)
def _no_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        raise Exit(kwargs, False)

    def fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
        raise Exit({"msg": msg, **kwargs}, True)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A config dir with master.cf and a queue dir with maildrop/ owned by the mail owner."""
    config = tmp_path / "etc-postfix"
    queue = tmp_path / "spool"
    config.mkdir()
    (config / "master.cf").write_text(DEBIAN)
    for name in ("maildrop", "incoming", "pid", "etc", "lib"):
        (queue / name).mkdir(parents=True)
    os.chmod(queue, 0o755)
    os.chown(queue / "maildrop", pwd.getpwnam(OWNER).pw_uid, -1)
    (queue / "maildrop" / "QUEUEFILE").write_text("queued mail")
    params = {"compatibility_level": "3.6", "queue_directory": str(queue), "mail_owner": OWNER,
              "smtp_tls_CApath": "/etc/ssl/certs", "smtp_tls_security_level": "may"}
    monkeypatch.setattr(_host, "postconf_x", lambda run, config_dir, *names, **kw: dict(params))
    yield {"config": config, "queue": queue, "params": params}


def run(args: dict[str, Any], *, check: bool = False, diff: bool = False) -> Exit:
    payload = {**args, "_ansible_check_mode": check, "_ansible_diff": diff}
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": payload}).encode()
    basic._ANSIBLE_PROFILE = "legacy"
    with pytest.raises(Exit) as info:
        module.main()
    return info.value


def ok(args: dict[str, Any], **kw: bool) -> dict[str, Any]:
    out = run(args, **kw)
    assert not out.failed, out.result["msg"]
    return out.result


def test_first_run_builds_the_jail_and_second_is_unchanged(instance: dict[str, Any]) -> None:
    args = {"config_dir": str(instance["config"])}
    queue: Path = instance["queue"]
    first = ok(args)
    assert first["changed"]
    for path in ("etc/resolv.conf", "etc/hosts", "etc/services", "etc/nsswitch.conf", LIB + "libnss_files.so.2"):
        assert path in first["created"], path
        assert (queue / path).is_file()
        st = (queue / path).stat()
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o644
    assert (queue / "etc/hosts").read_bytes() == Path("/etc/hosts").read_bytes()
    manifest = json.loads((queue / _classic_jail_sync.MANIFEST).read_text())
    assert set(first["created"]) == set(manifest["paths"])
    assert "etc/ssl" in first["directories"]
    second = ok(args)
    assert not second["changed"]
    assert second["created"] == second["updated"] == second["removed"] == []
    assert (queue / "maildrop" / "QUEUEFILE").read_text() == "queued mail"


def test_ca_directory_keeps_hash_links(instance: dict[str, Any]) -> None:
    ok({"config_dir": str(instance["config"])})
    certs: Path = instance["queue"] / "etc/ssl/certs"
    links = [p for p in certs.iterdir() if p.is_symlink()]
    assert links, "hash links expected"
    for link in links:
        target = os.readlink(link)
        assert "/" not in target and (certs / target).is_file() and not (certs / target).is_symlink()
    assert not (certs / "ca-certificates.crt").exists()  # CApath needs the hashed certificates only


def test_check_mode_predicts_the_real_run(instance: dict[str, Any]) -> None:
    args = {"config_dir": str(instance["config"])}
    predicted = ok(args, check=True)
    assert predicted["changed"] and not (instance["queue"] / "etc/hosts").exists()
    assert not (instance["queue"] / _classic_jail_sync.MANIFEST).exists()
    real = ok(args)
    for key in ("created", "updated", "removed", "directories"):
        assert predicted[key] == real[key], key
    assert not ok(args, check=True)["changed"]


def test_deleted_or_tampered_files_are_restored(instance: dict[str, Any]) -> None:
    args = {"config_dir": str(instance["config"])}
    queue: Path = instance["queue"]
    ok(args)
    (queue / "etc/services").unlink()
    (queue / "etc/hosts").write_text("10.0.0.1 evil\n")
    os.chmod(queue / "etc/resolv.conf", 0o600)
    again = ok(args, diff=True)
    assert again["changed"]
    assert again["created"] == ["etc/services"]
    assert sorted(again["updated"]) == ["etc/hosts", "etc/resolv.conf"]
    assert (queue / "etc/hosts").read_bytes() == Path("/etc/hosts").read_bytes()
    hosts_diff = [d for d in again["diff"] if d["before_header"].endswith("etc/hosts")]
    assert hosts_diff and hosts_diff[0]["before"] == "10.0.0.1 evil\n"
    assert "etc/services" in again["diff"][0]["after"]
    assert not ok(args)["changed"]


def test_what_is_no_longer_needed_is_removed_and_nothing_else(instance: dict[str, Any]) -> None:
    args = {"config_dir": str(instance["config"])}
    queue: Path = instance["queue"]
    (queue / "etc/debian-leftover").write_text("not ours")
    placed = set(ok(args)["created"])
    (instance["config"] / "master.cf").write_text(DEBIAN.replace(" y ", " n "))
    gone = ok(args)
    assert gone["changed"] and set(gone["removed"]) == placed | {_classic_jail_sync.MANIFEST}
    assert gone["plan"]["contents"] == [] and gone["plan"]["chrooted"] == []
    assert not (queue / "etc/ssl").exists() and not (queue / "etc/hosts").exists()
    assert (queue / "etc/debian-leftover").read_text() == "not ours"
    assert (queue / "maildrop" / "QUEUEFILE").read_text() == "queued mail"
    assert (queue / "etc").is_dir() and (queue / "lib").is_dir()  # Debian's directories stay
    assert not ok(args)["changed"]


def test_existing_identical_files_are_adopted(instance: dict[str, Any]) -> None:
    queue: Path = instance["queue"]
    shutil.copyfile("/etc/hosts", queue / "etc/hosts")
    os.chmod(queue / "etc/hosts", 0o644)
    out = ok({"config_dir": str(instance["config"])})
    assert "etc/hosts" not in out["created"] + out["updated"]
    assert "etc/hosts" in json.loads((queue / _classic_jail_sync.MANIFEST).read_text())["paths"]


def test_state_absent(instance: dict[str, Any]) -> None:
    args = {"config_dir": str(instance["config"])}
    ok(args)
    out = ok({**args, "state": "absent"})
    assert out["changed"] and "etc/hosts" in out["removed"]
    assert not (instance["queue"] / "etc/hosts").exists()


def test_verify_resolves_from_inside_as_the_mail_owner(instance: dict[str, Any]) -> None:
    out = ok({"config_dir": str(instance["config"]), "verify": True, "verify_names": ["localhost"],
              "verify_services": ["smtp", "submission"]})
    checks = {c["check"]: c for c in out["verify"]}
    assert checks["host localhost"]["ok"] and "127.0.0.1" in checks["host localhost"]["detail"]
    assert checks["service smtp/tcp"]["detail"] == "25"
    assert checks["service submission/tcp"]["detail"] == "587"


def test_verify_fails_clearly(instance: dict[str, Any]) -> None:
    out = run({"config_dir": str(instance["config"]), "verify": True, "verify_names": ["no-such-host.invalid"],
               "verify_services": ["no-such-service"]})
    assert out.failed
    assert "failed: host no-such-host.invalid" in out.result["msg"]
    assert "service no-such-service/tcp" in out.result["msg"]
    assert f"as {OWNER}" in out.result["msg"]


def test_verify_sees_a_broken_jail(instance: dict[str, Any]) -> None:
    ok({"config_dir": str(instance["config"])})
    queue = str(instance["queue"])
    os.unlink(os.path.join(queue, "etc/services"))
    checks = _classic_jail_sync.verify(queue, OWNER, services=["smtp"])
    assert not checks[0].ok  # the host has /etc/services; the jail does not


def test_verify_runs_as_the_mail_owner(instance: dict[str, Any]) -> None:
    ok({"config_dir": str(instance["config"])})
    queue: Path = instance["queue"]
    os.chmod(queue / "etc/services", 0o600)  # root could read it, the mail owner cannot
    assert not _classic_jail_sync.verify(str(queue), OWNER, services=["smtp"])[0].ok
    os.chmod(queue / "etc/services", 0o644)
    assert _classic_jail_sync.verify(str(queue), OWNER, services=["smtp"])[0].ok


def test_non_postfix_queue_directories_are_refused(instance: dict[str, Any]) -> None:
    queue: Path = instance["queue"]
    os.chown(queue / "maildrop", 0, -1)
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "maildrop is owned by uid 0, not by the mail owner" in out.result["msg"]
    shutil.rmtree(queue / "maildrop")
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "has no maildrop/ subdirectory" in out.result["msg"]
    assert not (queue / "etc/hosts").exists()


def test_queue_directory_not_owned_by_root_is_refused(instance: dict[str, Any]) -> None:
    os.chown(instance["queue"], pwd.getpwnam(OWNER).pw_uid, -1)
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "not root" in out.result["msg"]


def test_symlinked_jail_directory_is_refused(instance: dict[str, Any], tmp_path: Path) -> None:
    queue: Path = instance["queue"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (queue / "etc").rmdir()
    (queue / "etc").symlink_to(elsewhere)
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "is a symbolic link; refusing to write through it" in out.result["msg"]
    assert list(elsewhere.iterdir()) == []


def test_non_root_fails_without_changes(instance: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_classic_jail.os, "geteuid", lambda: 1000)
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "must run as root" in out.result["msg"]
    assert out.result["plan"]["contents"]
    assert not (instance["queue"] / "etc/hosts").exists()


def test_non_linux_reports_what_it_could_not_do(instance: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_classic_jail.platform, "system", lambda: "FreeBSD")
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "FreeBSD: syncing a jail is implemented for Linux only" in out.result["msg"]
    assert out.result["plan"]["contents"]
    assert not (instance["queue"] / "etc/hosts").exists()


def test_missing_master_cf(instance: dict[str, Any]) -> None:
    (instance["config"] / "master.cf").unlink()
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "cannot read" in out.result["msg"] and "master.cf" in out.result["msg"]


def test_bad_master_cf_names_the_line(instance: dict[str, Any]) -> None:
    (instance["config"] / "master.cf").write_text("smtp inet n - y\n")
    out = run({"config_dir": str(instance["config"])})
    assert out.failed and "master.cf line 1" in out.result["msg"]


def test_refresh_recopies_from_the_manifest(instance: dict[str, Any]) -> None:
    ok({"config_dir": str(instance["config"])})
    queue: Path = instance["queue"]
    (queue / "etc/hosts").write_text("stale\n")
    assert _classic_jail_sync.main(["chroot-sync", "refresh", str(queue)]) == 0
    assert (queue / "etc/hosts").read_bytes() == Path("/etc/hosts").read_bytes()
    assert _classic_jail_sync.main(["chroot-sync"]) == 2


def test_reload_signals_only_a_running_master(instance: dict[str, Any], tmp_path: Path) -> None:
    queue: Path = instance["queue"]
    flag = tmp_path / "hup"
    script = ("import signal, sys, time\n"
              "open('/proc/self/comm', 'w').write(sys.argv[1])\n"
              f"signal.signal(signal.SIGHUP, lambda *a: open({str(flag)!r}, 'w').write('hup'))\n"
              "print('ready', flush=True)\n"
              "time.sleep(10)\n")
    for comm, expected in (("postfix-ish", False), ("master", True)):
        child = subprocess.Popen([sys.executable, "-c", script, comm], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            (queue / "pid" / "master.pid").write_text(f"{child.pid:>10}\n")
            assert _classic_jail_sync.reload_master(str(queue)) is expected
            time.sleep(0.2)
            assert flag.exists() is expected
        finally:
            child.kill()
            child.wait()
    (queue / "pid" / "master.pid").unlink()
    assert _classic_jail_sync.reload_master(str(queue)) is False


def test_module_reloads_after_a_change(instance: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def reload_master(queue: str) -> bool:
        calls.append(queue)
        return True

    monkeypatch.setattr(_classic_jail, "reload_master", reload_master)
    assert ok({"config_dir": str(instance["config"])})["reloaded"] is True
    assert ok({"config_dir": str(instance["config"])})["reloaded"] is False  # nothing changed
    assert ok({"config_dir": str(instance["config"]), "state": "absent", "reload": False})["reloaded"] is False
    assert calls == [str(instance["queue"])]


def test_latin1_master_cf(instance: dict[str, Any]) -> None:
    """Postfix reads master.cf as bytes: a Latin-1 comment and -o value neither crash nor change it."""
    raw = fixture_files.read(ROOT / "tests/unit/fixtures/master.cf/latin1.cf")
    (instance["config"] / "master.cf").write_bytes(raw)
    assert ok({"config_dir": str(instance["config"])})["changed"]
    assert (instance["config"] / "master.cf").read_bytes() == raw
