"""Measurement helpers for bench/hostile.sh (python3 standard library only).

  hostile.py measure  ...   send one body N times, sample the server, print a JSON line
  hostile.py burst    ...   parallel bodies while probing /healthz and a small review
  hostile.py table    ...   render the JSON lines as the Markdown report

The server's CPU time comes from /proc/PID/stat (clock ticks), its memory from VmRSS
sampled every 2 ms while requests run, its own view of each request from the
"admission decision" log line (elapsed_us, JSON log format).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
CODE_RE = re.compile(r"\bEG\d{3}\b")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: fields start after the last ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks():
    """(busy, total) clock ticks of all cores, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def own_ticks():
    """Clock ticks used by this process (the sampler) and its waited-for children (curl)."""
    t = os.times()
    return (t.user + t.system + t.children_user + t.children_system) / TICK_S


def other_cpu(m0, m1, server_ticks, own):
    """Share of all cores used by other processes than the server, this script and its
    curls, between two machine_ticks(): another build on the machine shows up here."""
    busy, total = m1[0] - m0[0], m1[1] - m0[1]
    return max(0.0, 100.0 * (busy - server_ticks - own) / total) if total > 0 else 0.0


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Sampler(threading.Thread):
    """Maximum VmRSS of PID while running."""

    def __init__(self, pid, period=0.002):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.max_kib = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.max_kib = max(self.max_kib, status_kib(self.pid, "VmRSS"))
            except OSError:
                return
            time.sleep(self.period)

    def finish(self):
        self.stop.set()
        self.join()
        return self.max_kib


def settle(pid, max_s=5.0):
    """Waits until the server is idle and its RSS has stopped falling (jemalloc returns
    freed pages after dirty_decay_ms); returns VmRSS in KiB."""
    deadline = time.monotonic() + max_s
    last_rss, last_ticks = status_kib(pid, "VmRSS"), cpu_ticks(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        rss, ticks = status_kib(pid, "VmRSS"), cpu_ticks(pid)
        if abs(rss - last_rss) < 256 and ticks - last_ticks <= 1:
            return rss
        last_rss, last_ticks = rss, ticks
    return status_kib(pid, "VmRSS")


def linger(pid, max_s):
    """Seconds the server kept using CPU after the last answer (until 300 ms pass with at
    most one tick), and whether it was still busy after max_s."""
    start = time.monotonic()
    last_busy = start
    quiet = 0
    prev = cpu_ticks(pid)
    while True:
        time.sleep(0.1)
        if not alive(pid):
            return time.monotonic() - start, False
        now = cpu_ticks(pid)
        if now - prev <= 1:
            quiet += 1
        else:
            quiet, last_busy = 0, time.monotonic()
        prev = now
        if quiet >= 3:
            return last_busy - start, False
        if time.monotonic() - start > max_s:
            return time.monotonic() - start, True


def curl(url, body, ca, out, max_time):
    """One POST; returns (status or 'timeout'/'error', seconds, response bytes)."""
    cmd = [
        "curl", "-sS", "--cacert", ca, "-H", "Content-Type: application/json",
        "--data-binary", "@" + body, "-o", out, "-w", "%{http_code} %{time_total} %{size_download}",
        "--max-time", str(max_time), url,
    ]
    started = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    took = time.monotonic() - started
    if p.returncode == 28:
        return "timeout", took, 0
    parts = p.stdout.split()
    if p.returncode != 0 or len(parts) != 3:
        return "error", took, 0
    return parts[0], float(parts[1]), int(parts[2])


def verdict(path):
    """allowed/denied, the review's status code, its EG codes, and how EG901 came about."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return "-", "", []
    try:
        review = json.loads(raw)
    except ValueError:
        return "text: " + raw[:60].decode("utf-8", "replace").strip(), "", []
    resp = review.get("response") or {}
    status = resp.get("status") or {}
    msg = status.get("message") or ""
    texts = [msg] + list(resp.get("warnings") or [])
    ann = resp.get("auditAnnotations") or {}
    texts += [ann.get("codes", ""), ann.get("violations", "")]
    codes = sorted(set(CODE_RE.findall(" ".join(texts))))
    how = ""
    if "EG901" in codes:
        joined = " ".join(texts)
        how = "deadline" if "within the deadline" in joined else "budget" if "work budget" in joined else "?"
    word = "allowed" if resp.get("allowed") else "denied"
    if resp.get("patch"):
        word += "+patch"
    code = status.get("code")
    return word, str(code) if code else "", codes + ([f"({how})"] if how else [])


def decisions(log, offset):
    """elapsed_us of the decision lines, and the messages of rejections, since offset."""
    elapsed, rejected = [], []
    with open(log, "rb") as f:
        f.seek(offset)
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            # tracing's JSON lines carry the fields at the top level (flattened) or
            # under "fields".
            fields = ev.get("fields") or ev
            if fields.get("message") == "admission decision":
                elapsed.append(int(fields.get("elapsed_us", 0)))
            elif fields.get("message") in ("review not judged", "request rejected"):
                rejected.append(str(fields.get("reason", "")))
    return elapsed, rejected


def cmd_measure(a):
    pid = a.pid
    base_kib = settle(pid)
    log_offset = os.path.getsize(a.log)
    sampler = Sampler(pid)
    sampler.start()
    t0, m0, o0 = cpu_ticks(pid), machine_ticks(), own_ticks()
    statuses, times, sizes, first = [], [], [], None
    answer = os.path.join(a.scratch, "answer.json")
    died = False
    for i in range(a.n):
        # curl leaves the file alone when no answer arrives: never read an old one.
        if os.path.exists(answer):
            os.remove(answer)
        status, took, size = curl(a.url, a.body, a.ca, answer, a.max_time)
        statuses.append(status)
        times.append(took)
        sizes.append(size)
        if first is None:
            first = verdict(answer) if status.isdigit() else ("-", "", [])
        if not alive(pid):
            died = True
            break
        if status == "timeout":
            break  # the server is stuck on it: one is enough
    linger_s, still_busy = (0.0, False) if died else linger(pid, a.linger_max)
    t1 = cpu_ticks(pid) if not died else t0
    m1, o1 = machine_ticks(), own_ticks()
    rss_max_kib = sampler.finish()
    hwm_kib = status_kib(pid, "VmHWM") if not died else 0
    elapsed, rejected = decisions(a.log, log_offset)
    sent = len(statuses)
    word, code, codes = first or ("-", "", [])
    out = {
        "allowlist": a.allowlist,
        "shape": a.shape,
        "size": a.size,
        "endpoint": a.endpoint,
        "bytes": os.path.getsize(a.body),
        "description": a.description,
        "n": sent,
        "statuses": statuses,
        "verdict": word,
        "review_code": code,
        "codes": codes,
        "rejected": sorted(set(rejected)),
        "curl_ms": [round(t * 1000, 1) for t in times],
        "server_ms": [round(e / 1000, 1) for e in elapsed],
        "answer_bytes": max(sizes) if sizes else 0,
        "cpu_ms_per_req": round((t1 - t0) * TICK_S * 1000 / max(sent, 1), 1),
        "linger_s": round(linger_s, 2),
        "still_busy": still_busy,
        "other_cpu_pct": round(other_cpu(m0, m1, t1 - t0, o1 - o0)),
        "rss_base_mib": round(base_kib / 1024, 1),
        "rss_max_mib": round(rss_max_kib / 1024, 1),
        "hwm_mib": round(hwm_kib / 1024, 1),
        "died": died,
    }
    print(json.dumps(out))
    # Tells the script to restart the server before the next shape.
    return 3 if died or still_busy or "timeout" in statuses else 0


def probe(url, timeout=5.0, data=None, headers=None, ctx=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            r.read()
            code = r.status
    except Exception as e:  # noqa: BLE001 - any failure is a failed probe
        code = getattr(e, "code", None) or type(e).__name__
    return code, time.monotonic() - started


def cmd_burst(a):
    import ssl

    pid = a.pid
    base_kib = settle(pid)
    ctx = ssl.create_default_context(cafile=a.ca)
    small = open(a.small, "rb").read()
    sampler = Sampler(pid)
    sampler.start()
    t0, m0, o0 = cpu_ticks(pid), machine_ticks(), own_ticks()
    results = [None] * a.parallel

    def one(i):
        out = os.path.join(a.scratch, f"burst{i}.json")
        if os.path.exists(out):
            os.remove(out)
        results[i] = curl(a.url, a.body, a.ca, out, a.max_time)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(a.parallel)]
    started = time.monotonic()
    for t in threads:
        t.start()
    probes, reviews = [], []
    while any(t.is_alive() for t in threads):
        probes.append(probe(a.health))
        reviews.append(
            probe(a.small_url, data=small, headers={"Content-Type": "application/json"}, ctx=ctx)
        )
        time.sleep(a.period)
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    linger_s, still_busy = linger(pid, a.linger_max) if alive(pid) else (0.0, False)
    t1 = cpu_ticks(pid) if alive(pid) else t0
    m1, o1 = machine_ticks(), own_ticks()
    rss_max_kib = sampler.finish()
    words = [verdict(os.path.join(a.scratch, f"burst{i}.json")) for i in range(a.parallel)]
    out = {
        "allowlist": a.allowlist,
        "shape": a.shape,
        "size": a.size,
        "endpoint": a.endpoint,
        "bytes": os.path.getsize(a.body),
        "parallel": a.parallel,
        "statuses": [r[0] for r in results],
        "verdicts": sorted({f"{w} {' '.join(c)}".strip() for w, _, c in words}),
        "slowest_ms": round(max(r[1] for r in results) * 1000, 1),
        "wall_s": round(wall, 2),
        "probes": len(probes),
        "probe_fail": sum(1 for c, _ in probes if c != 200),
        "probe_max_ms": round(max((t for _, t in probes), default=0) * 1000, 1),
        "reviews": len(reviews),
        "review_fail": sum(1 for c, _ in reviews if c != 200),
        "review_max_ms": round(max((t for _, t in reviews), default=0) * 1000, 1),
        "cpu_s": round((t1 - t0) * TICK_S, 2),
        "linger_s": round(linger_s, 2),
        "still_busy": still_busy,
        "other_cpu_pct": round(other_cpu(m0, m1, t1 - t0, o1 - o0)),
        "rss_base_mib": round(base_kib / 1024, 1),
        "rss_max_mib": round(rss_max_kib / 1024, 1),
        "died": not alive(pid),
    }
    print(json.dumps(out))
    return 3 if out["died"] or still_busy else 0


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_ms(x):
    if x is None:
        return "–"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 1 else f"{x:.2f}"


def flags(r, slow_ms, rss_factor, answer_kib):
    f = []
    server = max(r["server_ms"]) if r["server_ms"] else None
    worst = server if server is not None else max(r["curl_ms"] or [0])
    if worst > slow_ms:
        f.append("slow")
    growth = r["rss_max_mib"] - r["rss_base_mib"]
    if growth * 1024 * 1024 > rss_factor * r["bytes"] and growth > 8:
        f.append("rss")
    if r["answer_bytes"] > answer_kib * 1024:
        f.append("answer")
    if any(s == "timeout" for s in r["statuses"]):
        f.append("timeout")
    if r["still_busy"]:
        f.append("linger")
    elif r["linger_s"] >= 0.5:
        f.append(f"linger {r['linger_s']:.1f}s")
    if r["died"]:
        f.append("DIED")
    bad = [s for s in r["statuses"] if s.startswith("5") and s != "503"]
    if bad:
        f.append("5xx")
    return f


def cmd_table(a):
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    bursts = [json.loads(l) for l in open(a.bursts) if l.strip()] if a.bursts and os.path.exists(a.bursts) else []
    print("| allowlist | shape | size | endpoint | body bytes | HTTP | verdict | codes | server ms median / max | client ms median | CPU ms/req | RSS MiB before → peak (growth ÷ body) | answer bytes | other CPU | flags |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        statuses = sorted(set(r["statuses"]))
        growth = r["rss_max_mib"] - r["rss_base_mib"]
        ratio = growth * 1024 * 1024 / r["bytes"] if r["bytes"] else 0
        verdict = r["verdict"] + (f" {r['review_code']}" if r["review_code"] else "")
        codes = " ".join(r["codes"]) or ("rejected: " + ",".join(r["rejected"]) if r["rejected"] else "")
        server = f"{fmt_ms(med(r['server_ms']))} / {fmt_ms(max(r['server_ms']))}" if r["server_ms"] else "–"
        print(
            f"| {r['allowlist']} | {r['shape']} | {r['size']} | {r['endpoint']} | {r['bytes']:,} | {','.join(statuses)} "
            f"| {verdict} | {codes} | {server} | {fmt_ms(med(r['curl_ms']))} | {'–' if r['died'] else format(r['cpu_ms_per_req'], '.0f')} "
            f"| {r['rss_base_mib']:.0f} → {r['rss_max_mib']:.0f} ({ratio:.1f}×) | {r['answer_bytes']:,} "
            f"| {r.get('other_cpu_pct', 0)}% | {' '.join(flags(r, a.slow_ms, a.rss_factor, a.answer_kib))} |"
        )
    if bursts:
        print()
        print(f"Concurrent: {bursts[0]['parallel']} copies of one body at once, /healthz and a 2 KiB review every 20 ms meanwhile (each on a new connection).")
        print()
        print("| allowlist | shape | size | body bytes | HTTP | verdicts | slowest hostile ms | wall s | probes (failed) | slowest probe ms | small reviews (failed) | slowest small review ms | server CPU s | RSS MiB before → peak | other CPU | flags |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for b in bursts:
            f = []
            if b["probe_max_ms"] > a.slow_ms:
                f.append("slow-probe")
            if b["review_max_ms"] > a.slow_ms:
                f.append("slow-review")
            if b["still_busy"]:
                f.append("linger")
            if b["died"]:
                f.append("DIED")
            print(
                f"| {b['allowlist']} | {b['shape']} | {b.get('size', '3m')} | {b['bytes']:,} | {','.join(sorted(set(b['statuses'])))} "
                f"| {'; '.join(b['verdicts'])} | {fmt_ms(b['slowest_ms'])} | {b['wall_s']} | {b['probes']} ({b['probe_fail']}) "
                f"| {fmt_ms(b['probe_max_ms'])} | {b['reviews']} ({b['review_fail']}) | {fmt_ms(b['review_max_ms'])} "
                f"| {b['cpu_s']} | {b['rss_base_mib']:.0f} → {b['rss_max_mib']:.0f} | {b.get('other_cpu_pct', 0)}% | {' '.join(f)} |"
            )


def cmd_summary(a):
    """One row per shape and endpoint at its largest size (and at 16 KiB when judging it
    inline takes over 10 ms): both allowlists side by side, for the README."""
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    allowlists = list(dict.fromkeys(r["allowlist"] for r in rows))
    by_key = {}
    for r in rows:
        by_key.setdefault((r["shape"], r["size"], r["endpoint"]), {})[r["allowlist"]] = r
    order = list(dict.fromkeys((r["shape"], r["endpoint"]) for r in rows))

    def server(r):
        return med(r["server_ms"]) if r["server_ms"] else med(r["curl_ms"])

    print(
        "| shape | size | endpoint | verdict, codes | server ms (" + " / ".join(allowlists) + ") "
        "| CPU ms | RSS growth MiB (÷ body) | answer bytes | flags |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for shape, endpoint in order:
        sizes = [k[1] for k in by_key if k[0] == shape and k[2] == endpoint]
        chosen = [z for z in sizes if z != "16k" and z != "256k"]
        if "16k" in sizes and any((server(r) or 0) > 10 for r in by_key[(shape, "16k", endpoint)].values()):
            chosen.insert(0, "16k")
        for size in chosen:
            group = by_key[(shape, size, endpoint)]
            first = next(iter(group.values()))
            verdict = first["verdict"] + (f" {first['review_code']}" if first["review_code"] else "")
            codes = " ".join(first["codes"])
            times = " / ".join(fmt_ms(server(group[al])) if al in group else "–" for al in allowlists)
            cpu = "–" if any(r["died"] for r in group.values()) else f"{max(r['cpu_ms_per_req'] for r in group.values()):.0f}"
            growth = max(r["rss_max_mib"] - r["rss_base_mib"] for r in group.values())
            ratio = growth * 1024 * 1024 / first["bytes"]
            answer = max(r["answer_bytes"] for r in group.values())
            fl = sorted({f for r in group.values() for f in flags(r, a.slow_ms, a.rss_factor, a.answer_kib)})
            print(
                f"| {shape} | {size} ({first['bytes'] / 1048576:.2f} MiB) | {endpoint} | {verdict}{' ' + codes if codes else ''} "
                f"| {times} | {cpu} | {growth:.0f} ({ratio:.0f}×) | {answer:,} | {' '.join(fl)} |"
            )


def cmd_failures(a):
    """Prints one line per failure the script must exit non-zero for."""
    for l in open(a.results):
        r = json.loads(l)
        what = f"{r['allowlist']} {r['shape']} {r['size']} {r['endpoint']}"
        bad = [s for s in r["statuses"] if s.startswith("5") and s != "503"]
        if bad:
            print(f"{what}: HTTP {','.join(bad)}")
        if r["died"]:
            print(f"{what}: the server died")
        # A /mutate patch is one operation per patched route: proportional by design.
        patch = r["endpoint"] == "mutate" and r["verdict"].endswith("+patch")
        if r["answer_bytes"] > 16 * 1024 and not patch:
            print(f"{what}: answer of {r['answer_bytes']} bytes (over 16 KiB)")
        if "timeout" in r["statuses"] or "error" in r["statuses"]:
            print(f"{what}: no answer ({','.join(r['statuses'])})")
    if a.bursts and os.path.exists(a.bursts):
        for l in open(a.bursts):
            b = json.loads(l)
            what = f"burst {b['allowlist']} {b['shape']}"
            bad = [s for s in b["statuses"] if s.startswith("5") and s != "503" or s in ("timeout", "error")]
            if bad:
                print(f"{what}: {','.join(bad)}")
            if b["died"]:
                print(f"{what}: the server died")


def cmd_pick(a):
    """Shapes for the bursts: at 3m the slowest (server time), the one with the largest
    RSS growth and the one working longest after its answer, among those that did not
    get stuck; at 16k (judged inline) the slowest."""
    rows = [json.loads(l) for l in open(a.results) if l.strip()]
    rows = [r for r in rows if r["allowlist"] == a.allowlist and not r["still_busy"] and not r["died"]]
    big = [r for r in rows if r["size"] == "3m"]
    small = [r for r in rows if r["size"] == "16k"]
    slowness = lambda r: med(r["server_ms"]) or med(r["curl_ms"]) or 0  # noqa: E731
    picked = []
    if big:
        picked.append(max(big, key=slowness))
        picked.append(max(big, key=lambda r: r["rss_max_mib"] - r["rss_base_mib"]))
        lingering = max(big, key=lambda r: r["linger_s"])
        if lingering["linger_s"] >= 0.5:
            picked.append(lingering)
    if small:
        slow = max(small, key=slowness)
        if slowness(slow) > 10:
            picked.append(slow)
    seen = set()
    for r in picked:
        key = (r["shape"], r["size"], r["endpoint"])
        if key not in seen:
            seen.add(key)
            print("\t".join(key))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    for k in ("allowlist", "shape", "size", "endpoint", "description", "url", "body", "ca", "log", "scratch"):
        m.add_argument("--" + k, required=True)
    m.add_argument("--pid", type=int, required=True)
    m.add_argument("--n", type=int, default=5)
    m.add_argument("--max-time", type=float, default=30)
    m.add_argument("--linger-max", type=float, default=10)
    b = sub.add_parser("burst")
    for k in ("allowlist", "shape", "size", "endpoint", "url", "body", "ca", "health", "small", "small_url", "scratch"):
        b.add_argument("--" + k.replace("_", "-"), dest=k, required=True)
    b.add_argument("--pid", type=int, required=True)
    b.add_argument("--parallel", type=int, default=8)
    b.add_argument("--period", type=float, default=0.02)
    b.add_argument("--max-time", type=float, default=30)
    b.add_argument("--linger-max", type=float, default=10)
    t = sub.add_parser("table")
    t.add_argument("--results", required=True)
    t.add_argument("--bursts")
    t.add_argument("--slow-ms", type=float, default=100)
    t.add_argument("--rss-factor", type=float, default=5)
    t.add_argument("--answer-kib", type=float, default=4)
    u = sub.add_parser("summary")
    u.add_argument("--results", required=True)
    u.add_argument("--slow-ms", type=float, default=100)
    u.add_argument("--rss-factor", type=float, default=5)
    u.add_argument("--answer-kib", type=float, default=4)
    f = sub.add_parser("failures")
    f.add_argument("--results", required=True)
    f.add_argument("--bursts")
    k = sub.add_parser("pick")
    k.add_argument("--results", required=True)
    k.add_argument("--allowlist", required=True)
    a = p.parse_args()
    commands = {"measure": cmd_measure, "burst": cmd_burst, "table": cmd_table, "failures": cmd_failures, "pick": cmd_pick, "summary": cmd_summary}
    sys.exit(commands[a.cmd](a) or 0)


if __name__ == "__main__":
    main()
