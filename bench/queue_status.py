# Copyright: mailfleet.postfix contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""instance_info on a large queue: how long counting, postqueue -j and the whole status take.

Runs on this machine, no containers: it needs root and Postfix's commands (postconf, postfix,
sendmail, postqueue), no running Postfix. It makes a throw-away instance in a temporary
directory (main.cf with its own queue_directory, ``postfix set-permissions``), queues one real
message with sendmail (it stays in maildrop: no pickup runs), and copies that queue file N times
with fresh queue ids: 90% deferred (each with a defer log naming one of four reasons), 4% active,
3% hold, 2% incoming, 1% maildrop. postqueue then runs showq directly on it (root, instance
down), as it does for a stopped instance.

Measured, each the median of --rounds runs (page cache warm, the files were just written):
  count      _postfix_queue.count_directories (files per queue directory)
  postqueue  postqueue -c DIR -j to /dev/null (showq alone)
  summarize  _postfix_queue.summarize over _host.stream_lines(postqueue -j): what the module runs
  parse      summarize over the same lines from memory (the parsing alone)
  status     _status_observe.observe + _status_report.report of the instance, queue_details on / off
and the peak memory (ru_maxrss) of this process after each step.

    sudo .venv/bin/python bench/queue_status.py --messages 100000
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "build" / "collections"))

from ansible_collections.mailfleet.postfix.plugins.module_utils import _host, _status_observe, _status_report  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_instances import Postfix  # noqa: E402
from ansible_collections.mailfleet.postfix.plugins.module_utils._postfix_queue import count_directories, summarize  # noqa: E402

REASONS = (
    "connect to mx1.example.net[192.0.2.10]:25: Connection refused",
    "connect to mx2.example.org[198.51.100.7]:25: Connection timed out",
    "host mx.example.com[203.0.113.5] said: 451 4.7.1 Greylisted, try again later (in reply to RCPT TO command)",
    "delivery temporarily suspended: connect to relay.internal[10.0.0.3]:25: Connection refused",
)
SPREAD = (("deferred", 90), ("active", 4), ("hold", 3), ("incoming", 2), ("maildrop", 1))


def make_instance(base: Path) -> Path:
    etc, spool, data = base / "etc", base / "spool", base / "data"
    for d in (etc, spool, data):
        d.mkdir(parents=True)
    shutil.copy("/etc/postfix/master.cf", etc / "master.cf") if os.path.exists("/etc/postfix/master.cf") \
        else (etc / "master.cf").write_text("smtp inet n - y - - smtpd\n")
    (etc / "main.cf").write_text(f"compatibility_level = 3.6\nqueue_directory = {spool}\ndata_directory = {data}\n")
    subprocess.run(["postfix", "-c", str(etc), "set-permissions"], check=True, capture_output=True)
    env = dict(os.environ, MAIL_CONFIG=str(etc))
    subprocess.run(["sendmail", "-f", "sender@example.org", "rcpt@example.net"], input=b"Subject: bench\n\nhello\n",
                   env=env, check=True, capture_output=True)
    return etc


def fabricate(spool: Path, messages: int) -> dict[str, int]:
    template_path = next((spool / "maildrop").iterdir())
    template = template_path.read_bytes()
    template_path.unlink()
    rng = random.Random(17)
    owner = pwd.getpwnam("postfix")
    ids = (owner.pw_uid, owner.pw_gid)  # showq reads the queue as mail_owner, as Postfix writes it
    made = dict.fromkeys((q for q, _share in SPREAD), 0)
    plan = [q for q, share in SPREAD for _unused in range(messages * share // 100)]
    plan += ["deferred"] * (messages - len(plan))
    for number, queue in enumerate(plan):
        qid = f"{rng.getrandbits(44):011X}"
        hashed = queue in ("deferred",)
        where = spool / queue / qid[0] if hashed else spool / queue
        if not where.is_dir():
            where.mkdir()
            os.chown(where, *ids)
        path = where / qid
        path.write_bytes(template)
        os.chmod(path, 0o700)
        os.chown(path, *ids)
        if queue == "deferred":
            logdir = spool / "defer" / qid[0]
            if not logdir.is_dir():
                logdir.mkdir()
                os.chown(logdir, *ids)
            (logdir / qid).write_text(f"recipient=rcpt@example.net\norig_to=rcpt@example.net\nstatus=4.4.1\n"
                                      f"action=delayed\nreason={REASONS[number % len(REASONS)]}\n\n")
            os.chown(logdir / qid, *ids)
        made[queue] += 1
    return made


def timed(fn, rounds: int) -> tuple[float, object]:
    times, value = [], None
    for _unused in range(rounds):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the temporary instance in place")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("postqueue"):
        print("queue_status: needs root and Postfix's commands (apt-get install postfix)", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="mailfleet-queue-bench-"))
    base.chmod(0o755)  # the postfix user reaches its queue through it
    try:
        etc = make_instance(base)
        spool = base / "spool"
        start = time.perf_counter()
        made = fabricate(spool, args.messages)
        fabricated = time.perf_counter() - start
        postqueue = ["postqueue", "-c", str(etc), "-j"]
        results: dict[str, object] = {"messages": args.messages, "made": made, "fabricate_s": round(fabricated, 2),
                                      "rounds": args.rounds, "python": sys.version.split()[0]}
        base_rss = peak_mib()
        seconds, counts = timed(lambda: count_directories(str(spool)), args.rounds)
        results["count"] = {"s": round(seconds, 3), "counts": counts, "peak_rss_mib": round(peak_mib(), 1)}
        seconds, _unused = timed(lambda: subprocess.run(postqueue, stdout=subprocess.DEVNULL,
                                                        stderr=subprocess.DEVNULL, check=True), args.rounds)
        results["postqueue"] = {"s": round(seconds, 3)}
        seconds, summary = timed(lambda: summarize(_host.stream_lines(postqueue)), args.rounds)
        results["summarize"] = {"s": round(seconds, 3), "counts": summary.counts, "reasons": summary.reasons,
                                "peak_rss_mib": round(peak_mib(), 1), "rss_before_mib": round(base_rss, 1)}
        lines = subprocess.run(postqueue, capture_output=True, check=True).stdout.decode().splitlines()
        results["stream_mib"] = round(sum(len(x) + 1 for x in lines) / 2**20, 1)
        seconds, _unused = timed(lambda: summarize(lines), args.rounds)
        results["parse"] = {"s": round(seconds, 3)}
        lines = []  # the parse step is timed; free the memory
        postfix = Postfix(primary=str(etc), run=_host.local_run)
        for details in (True, False):
            opts = _status_observe.Options(queue_details=details, exposure=False, mail_logs=("/dev/null",))

            def status(opts: _status_observe.Options = opts) -> object:
                now = time.time()
                return [_status_report.report(s, now)
                        for s in _status_observe.observe(_host.local_run, _host.stream_lines, opts, now, postfix)]

            seconds, reports = timed(status, args.rounds)
            results[f"status_details_{'on' if details else 'off'}"] = {
                "s": round(seconds, 3), "queues": reports[0]["queues"], "oldest_deferred_age":
                reports[0]["oldest_deferred_age"]}
        results["peak_rss_mib"] = round(peak_mib(), 1)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    out = ROOT / "bench" / "results" / time.strftime("queue-status-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"queue_status: results in {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
