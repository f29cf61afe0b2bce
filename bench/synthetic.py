# Copyright: mailfleet maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Generator timing on the default master.cf and on synthetic 100 / 1,000-entry files.

The timing itself is bench/generator.sh (ours against Debian's postfix-instance-generator, on this
host); this only builds the configuration directories and reads its output. The synthetic files are
the distribution's master.cf plus entries of the kinds real ones add, each on its own listener:
smtp/lmtp transports with -o overrides, pipe transports, and loopback smtpd listeners.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchlib import ROOT, table

DIST = Path("/usr/share/postfix/master.cf.dist")
MAIN_CF = (Path("/etc/postfix/main.cf"), Path("/usr/share/postfix/main.cf.debian"))
RE_OURS = re.compile(r"mailfleet-postfix\s+([\d.]+) ms wall,\s+([\d.]+) ms CPU \((.*)\)")
RE_DEBIAN = re.compile(r"Debian postfix-instance-generator\s+([\d.]+) ms wall,\s+([\d.]+) ms CPU")
RE_UNITS = re.compile(r"(\d+) units from")
# issue 15: ours / Debian's on the default master.cf, master.cf unchanged and changed (full mapping).
TARGET = 2.0


def extra_entries(count: int) -> list[str]:
    lines = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            lines.append(f"relay{i} unix - - y - - smtp -o syslog_name=postfix/relay{i} -o smtp_helo_timeout=30s")
        elif kind == 1:
            lines.append(f"127.0.0.1:{20000 + i} inet n - y - - smtpd -o syslog_name=postfix/in{i}"
                         " -o smtpd_client_restrictions=permit_mynetworks,reject")
        elif kind == 2:
            lines.append(f"pipe{i} unix - n n - - pipe flags=Rq user=nobody argv=/bin/cat ${{recipient}}")
        else:
            lines.append(f"lmtp{i} unix - - y - - lmtp -o lmtp_connect_timeout=5s")
    return lines


def config_dir(entries: int | None, base: Path) -> Path:
    """A config dir with this host's main.cf and a master.cf of `entries` active entries (None: default)."""
    d = base / f"entries-{entries or 'default'}"
    d.mkdir()
    # A build host set up by lab/setup-host.sh has Postfix unconfigured (no main.cf): use Debian's.
    main = next((p for p in MAIN_CF if p.exists()), None)
    (d / "main.cf").write_bytes(main.read_bytes() if main else b"")
    master = DIST.read_text(encoding="utf-8") if DIST.exists() else Path("/etc/postfix/master.cf").read_text(encoding="utf-8")
    (d / "master.cf").write_text(master, encoding="utf-8")
    have = int(subprocess.run(["postconf", "-c", str(d), "-M"], capture_output=True, text=True, check=True).stdout.count("\n"))
    if entries:
        with (d / "master.cf").open("a", encoding="utf-8") as f:
            f.write("\n# synthetic entries (bench/synthetic.py)\n" + "\n".join(extra_entries(entries - have)) + "\n")
    return d


def measure(sizes: list[int | None], runs: dict[int | None, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    script = ROOT / "bench" / "generator.sh"
    if not script.exists():
        return {"error": "bench/generator.sh is missing"}
    base = Path(tempfile.mkdtemp(prefix="mailfleet-bench-gen."))
    try:
        for size in sizes:
            d = config_dir(size, base)
            entries = subprocess.run(["postconf", "-c", str(d), "-M"], capture_output=True, text=True, check=True).stdout.count("\n")
            env = dict(os.environ, MAIL_CONFIG=str(d))
            proc = subprocess.run([str(script), str(runs.get(size, 10))], capture_output=True, text=True, env=env,
                                  check=False, timeout=1800)
            # The temporary directory's name is noise in the results.
            text = (proc.stdout + proc.stderr).replace(str(base), "TMPDIR")
            ours = RE_OURS.findall(text)
            debian = RE_DEBIAN.search(text)
            units = RE_UNITS.search(text)
            rec: dict[str, Any] = {"entries": entries, "runs": runs.get(size, 10), "rc": proc.returncode, "output": text.strip().splitlines()}
            if len(ours) >= 2:
                rec.update(unchanged_ms=float(ours[0][0]), unchanged_cpu_ms=float(ours[0][1]),
                           changed_ms=float(ours[1][0]), changed_cpu_ms=float(ours[1][1]))
            if len(ours) >= 3:  # no saved unit set (results before issue 15 measured only this as "changed")
                rec.update(cold_ms=float(ours[2][0]), cold_cpu_ms=float(ours[2][1]))
            if debian:
                rec.update(debian_ms=float(debian.group(1)), debian_cpu_ms=float(debian.group(2)))
            if units:
                rec["units"] = int(units.group(1))
            out["default" if size is None else str(size)] = rec
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def render(result: dict[str, Any]) -> str:
    if "error" in result:
        return result["error"]
    rows = []
    # JSON keeps keys sorted as text; show the default first, then by size.
    for key, r in sorted(result.items(), key=lambda kv: kv[1].get("entries", 0)):
        name = "default master.cf" if key == "default" else f"synthetic, {key} entries"
        if "changed_ms" not in r:
            rows.append([name, r.get("entries", "?"), "–", "–", "–", "–", "–", "–", "–", "–", f"no timing (exit {r.get('rc')})"])
            continue
        deb = r.get("debian_ms")
        cold = r.get("cold_ms")
        ratios = [r["unchanged_ms"] / deb, r["changed_ms"] / deb] if deb else []
        target = met = "–"
        if key == "default" and ratios:
            target = f"≤ {TARGET:.1f}×"
            met = " / ".join("yes" if x <= TARGET else "NO" for x in ratios)
        rows.append([
            name, r["entries"], r.get("units", "?"),
            f"{r['unchanged_ms']:.1f} ({r['unchanged_cpu_ms']:.1f})", f"{r['changed_ms']:.1f} ({r['changed_cpu_ms']:.1f})",
            f"{cold:.1f} ({r['cold_cpu_ms']:.1f})" if cold is not None else "–",
            f"{deb:.1f} ({r['debian_cpu_ms']:.1f})" if deb else "–",
            " / ".join(f"{x:.2f}×" for x in ratios + ([cold / deb] if deb and cold is not None else [])) or "–",
            target, met, r["runs"],
        ])
    out = table(["master.cf", "entries", "units", "ours unchanged: wall (CPU) ms", "ours changed: wall (CPU) ms",
                 "ours, no saved set: wall (CPU) ms", "Debian: wall (CPU) ms", "ratio unchanged / changed / no set",
                 "target", "met (unchanged / changed)", "runs"], rows)
    if any("changed_ms" in r and "cold_ms" not in r for r in result.values()):
        out += "\n(an earlier bench/generator.sh: its \"changed\" runs had no saved unit set either)"
    return out
