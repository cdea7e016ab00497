"""Time from an allowlist file change to the first /validate decision that reflects it.

Used by bench/reload.sh. Alternates the live allowlist between a version that allows
the review's host and one that does not (atomic rename, as kubelet's ConfigMap swap
does), and after each swap polls /validate over one kept-alive HTTPS connection until
`response.allowed` flips. Prints one line per flip, then a summary line:

    flips N p50_ms p90_ms max_ms timeouts T

usage: flip_latency.py URL CA LIVE ALLOW_FILE DENY_FILE BODY FLIPS
"""

import http.client
import json
import math
import os
import shutil
import ssl
import sys
import time
import urllib.parse


def main() -> int:
    url, ca, live, allow_file, deny_file, body_file, flips = sys.argv[1:8]
    flips = int(flips)
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    body = open(body_file, "rb").read()
    conn = None

    def allowed() -> bool:
        nonlocal conn
        for _ in range(3):
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=5)
                conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {data[:200]!r}")
                return bool(json.loads(data)["response"]["allowed"])
            except (OSError, http.client.HTTPException):
                conn = None
        raise RuntimeError("/validate unreachable")

    def swap(src: str) -> None:
        tmp = os.path.join(os.path.dirname(live), ".flip.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, live)

    results, timeouts = [], 0
    want = allowed()
    for i in range(flips):
        want = not want
        swap(allow_file if want else deny_file)
        t0 = time.monotonic()
        while True:
            if allowed() == want:
                ms = (time.monotonic() - t0) * 1e3
                results.append(ms)
                print(f"flip {i + 1}: allowed={want} after {ms:.1f} ms", flush=True)
                break
            if time.monotonic() - t0 > 10:
                timeouts += 1
                print(f"flip {i + 1}: allowed={want} NOT seen within 10 s", flush=True)
                break
            time.sleep(0.001)
        # Let the watcher's 100 ms debounce settle before the next change.
        time.sleep(0.3)

    results.sort()
    if not results:
        print(f"flips 0 nan nan nan timeouts {timeouts}")
        return 1

    def pct(p: float) -> float:
        return results[min(len(results) - 1, max(0, math.ceil(len(results) * p / 100) - 1))]

    print(
        f"flips {len(results)} {pct(50):.1f} {pct(90):.1f} {results[-1]:.1f} timeouts {timeouts}"
    )
    return 0 if timeouts == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
