#!/usr/bin/env python3
"""Side-by-side download benchmark against peers on a loopback nginx.

peers.py [--runs N] [--tools a,b] [--scenarios s,t] [--ours PATH] [--base PATH] [--relay-bin DIR]
Prints one row per (scenario, tool): median wall s, user+sys CPU s, peak RSS MiB, MB/s,
volley's median wall time divided by the tool's (vol/x: 1.05x means volley took 5% longer), ok.
Runs are interleaved across tools.
Outputs go to tmpfs so the disk is out of the measurement.

Servers: nginx.sh's nginx (plain HTTP on DMBENCH_PORT, default 18080; HTTPS with HTTP/2 on
DMBENCH_H2_PORT, 18443; HTTPS with HTTP/1.1 only on DMBENCH_H1S_PORT, 18444; its CA in
DMBENCH_RUN/tls/ca.pem, DMBENCH_RUN defaulting to /tmp/dmbench-nginx), and, started here for the
scenarios that need them and stopped after, bench/relay's `relay` (latency, a rate cap per
connection) and `faulty` (a server that fails a share of requests on purpose).
"""
import argparse, hashlib, os, re, shutil, statistics, subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
PORT = int(os.environ.get("DMBENCH_PORT", "18080"))
H2_PORT = int(os.environ.get("DMBENCH_H2_PORT", "18443"))
H1S_PORT = int(os.environ.get("DMBENCH_H1S_PORT", "18444"))
RUN = os.environ.get("DMBENCH_RUN", "/tmp/dmbench-nginx")
CA = f"{RUN}/tls/ca.pem"
WWW = "/dev/shm/dmbench/www"
OUT = "/dev/shm/dmbench/out"
LISTS = "/dev/shm/dmbench/lists"
MiB = 1 << 20

# The origins a scenario can use: nginx's three servers by name, or a relay in
# front of one of them (started for the scenario), or faulty.
NGINX = {"http": ("http", PORT), "h2": ("https", H2_PORT), "h1s": ("https", H1S_PORT)}


def paths(fmt, n):
    return [fmt.format(i) for i in range(n)]


SMALL, TINY, LARGE = paths("small/f{}.bin", 2000), paths("tiny/t{}.bin", 10000), paths("large/L{}.bin", 4)

# server: an nginx name above, "relay" (with relay=dict(upstream=NAME, rtt_ms=, rate=)), or "faulty".
# floor: the rate cap's floor, total / (connections x rate), printed with each tool's wall / floor.
SCEN = {
    "small":     dict(paths=SMALL, jobs=16, conns=1, server="http"),
    "tiny":      dict(paths=TINY, jobs=32, conns=1, server="http"),
    "large":     dict(paths=LARGE, jobs=4, conns=1, server="http"),
    # 256 MiB over 16 connections, each capped at 8 MiB/s by the relay (a token bucket per
    # connection, as tc would): floor 256 / (16 x 8) = 2.0 s.
    "throttled": dict(paths=["large/L0.bin"], jobs=1, conns=16, server="relay",
                      relay=dict(upstream="http", rtt_ms=0, rate=8 * MiB), floor=True),
    # The throttled scenario before the relay: nginx's limit_rate on /slow/ (see pacing_floor).
    "throttled-nginx": dict(paths=["large/L0.bin"], url_prefix="slow/", jobs=1, conns=16, server="http", paced=True),
    # 100,000 URLs: peak memory of a long list (target: under 64 MiB for volley).
    "many":      dict(paths=paths("many/m{}.bin", 100000), jobs=32, conns=1, server="http"),
    # The same over HTTPS: HTTP/2 where the tool has it (aria2c has not: HTTP/1.1), and HTTP/1.1 only.
    "h2-tiny":   dict(paths=TINY, jobs=32, conns=1, server="h2"),
    "h2-small":  dict(paths=SMALL, jobs=16, conns=1, server="h2"),
    "h2-large":  dict(paths=LARGE, jobs=4, conns=1, server="h2"),
    "tls-large": dict(paths=LARGE, jobs=4, conns=1, server="h1s"),
    # 40 ms round trip (20 ms each way, one more round trip for a new connection's TCP handshake).
    "rtt-small": dict(paths=SMALL, jobs=16, conns=1, server="relay", relay=dict(upstream="h2", rtt_ms=40, rate=0)),
    # A tool past 60 s (30 times the floor) is stopped: wget2 puts its 16 chunks on one HTTP/2
    # connection, which the relay caps like any other, and took 357 s in a run without the limit.
    "rtt-split": dict(paths=["large/L0.bin"], jobs=1, conns=16, server="relay",
                      relay=dict(upstream="h2", rtt_ms=40, rate=8 * MiB), floor=True, timeout=60),
    # 15% of requests fail (reset, 503, stall 6 s, short body); every tool retries; every file is
    # checked byte for byte on every run. faulty restarts before each run: the same faults each time.
    "chaos":     dict(paths=paths("chaos/c{}.bin", 1000), jobs=16, conns=1, server="faulty",
                      full_check=True, retry=True, timeout=300, compare=("aria2c", "curl")),
}


def cmd_for(tool, s, lst, out, ours, base=None):
    j, x = s["jobs"], s["conns"]
    tls = s["urls"][0].startswith("https:")
    retry = s.get("retry", False)
    if tool == "aria2c":
        c = ["aria2c", "-q", "-i", lst, f"-j{j}", f"-x{x}", f"-s{x}", "-k1M", "-d", out,
             "--allow-overwrite=true", "--auto-file-renaming=false", "--file-allocation=none",
             "--summary-interval=0", "--console-log-level=error"]
        if tls: c.append(f"--ca-certificate={CA}")
        if retry: c += ["--max-tries=10", "--retry-wait=1"]
        return c
    if tool == "wget2":
        c = ["wget2", "-q", f"--max-threads={max(j, x)}", "-i", lst, "-P", out, "--no-robots"]
        if x > 1: c.append("--chunk-size=16M")
        if tls: c.append(f"--ca-certificate={CA}")
        if retry: c.append("--tries=10")
        return c
    if tool == "curl":
        if x > 1: return None
        cfg = lst + ".curl"
        with open(cfg, "w") as f:
            for u in s["urls"]: f.write(f'url = "{u}"\n')
        c = ["curl", "-s", "-Z", f"--parallel-max", str(j), "--output-dir", out, "--remote-name-all", "-K", cfg]
        if tls: c += ["--cacert", CA]
        if retry: c += ["--retry", "10", "--retry-all-errors"]
        return c
    if tool == "axel":
        # One URL per run, and no option to trust a CA: left out of the HTTPS scenarios.
        if len(s["urls"]) != 1 or tls: return None
        return ["axel", "-q", "-n", str(x), "-o", out + "/", s["urls"][0]]
    if tool in ("volley", "base"):
        # "base": another build of volley (--base), e.g. before a change. Retries: volley's defaults.
        ours = ours if tool == "volley" else base
        if not ours or not os.path.exists(ours): return None
        c = [ours, "-q", "-i", lst, "-j", str(j), "--max-per-host", str(max(j, x)), "-d", out]
        if x > 1: c += ["-x", str(x)]
        if tls: c += ["--ca-cert", CA]
        return c
    raise SystemExit(f"unknown tool {tool}")


def digest(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(1 << 20): h.update(b)
    return h.hexdigest()


def verify(s, out, full):
    names = [os.path.basename(f) for f in s["paths"]]
    for n in names:
        if not os.path.exists(os.path.join(out, n)): return f"missing {n}"
    sizes_ok = all(os.path.getsize(os.path.join(out, os.path.basename(f))) == os.path.getsize(os.path.join(WWW, f)) for f in s["paths"])
    if not sizes_ok: return "size mismatch"
    if full:
        # Every file, byte for byte, on each tool's first run (sizes on the others).
        for f in s["paths"]:
            if digest(os.path.join(out, os.path.basename(f))) != digest(os.path.join(WWW, f)): return f"content mismatch {f}"
    return "ok"


# nginx's limit_rate paces each request, not each connection: it sends the first
# sendfile chunk (sendfile_max_chunk, 2 MiB since nginx 1.21.4) at once, then
# waits chunk/rate before the next. A tool that asks each of its connections for
# one even share of the file can finish no sooner than this.
PACE_RATE = 8 << 20
PACE_CHUNK = 2 << 20


def pacing_floor(total, conns):
    share = -(-total // conns)
    return (-(-share // PACE_CHUNK) - 1) * PACE_CHUNK / PACE_RATE


class Helper:
    """relay, faulty or h2serve from bench/relay on a loopback port (a free one at first, the
    same one after a restart), until stop(). Its stderr goes to `log` (appended), else to ours.
    Also used by smoke.py."""

    def __init__(self, argv, log=None):
        self.argv, self.port, self.p = argv, 0, None
        self.log = open(log, "a") if log else None

    def start(self):
        argv = self.argv + ["--listen", f"127.0.0.1:{self.port}"]
        name = os.path.basename(argv[0])
        if not os.access(argv[0], os.X_OK):
            raise SystemExit(f"no {argv[0]}; build it: cargo build --release --features h2serve "
                             f"--manifest-path {HERE}/relay/Cargo.toml")
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.p.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if not m:
            self.p.kill()
            where = f"; see {self.log.name}" if self.log else ""
            raise SystemExit(f"{name} did not start ({line.strip()!r}){where}")
        self.port = int(m.group(1))
        return self

    def stop(self):
        """Stops it (SIGTERM) and returns what it printed after its first line."""
        if not self.p: return ""
        self.p.terminate()
        try:
            rest, _ = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill(); rest, _ = self.p.communicate()
        self.p = None
        return rest


def helper_for(s, relay_bin):
    """The relay or faulty a scenario needs (not started), and its URL scheme."""
    if s["server"] == "relay":
        r = s["relay"]
        scheme, port = NGINX[r["upstream"]]
        argv = [f"{relay_bin}/relay", "--upstream", f"127.0.0.1:{port}", "--rtt-ms", str(r["rtt_ms"]), "--rate", str(r["rate"])]
        return Helper(argv, log=f"{LISTS}/relay.log"), scheme
    if s["server"] == "faulty":
        argv = [f"{relay_bin}/faulty", "--root", WWW, "--fraction", "0.15", "--seed", "1"]
        return Helper(argv, log=f"{LISTS}/faulty.log"), "http"
    return None, NGINX[s["server"]][0]


def faults_of(text):
    m = re.search(r"(\d+) requests, (\d+) faults", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def run_once(cmd, timeout):
    t = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", "/tmp/dmbench.time"] + cmd
    # Its own process group: a tool that overruns is stopped with its children.
    p = subprocess.Popen(t, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9); p.communicate()
        return float(timeout), 0.0, 0.0, -1, f"timed out after {timeout} s"
    e, u, sy, m = open("/tmp/dmbench.time").read().split()[-4:]
    return float(e), float(u) + float(sy), int(m) / 1024, p.returncode, err.decode()[-300:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="aria2c,wget2,curl,axel,volley")
    ap.add_argument("--scenarios", default="small,large,throttled")
    ap.add_argument("--ours", default=os.environ.get("VOLLEY", "target/release/volley"), help="path of the volley binary")
    ap.add_argument("--base", help="another volley binary to run beside it as the tool 'base' (a build before a change)")
    ap.add_argument("--relay-bin", default=f"{HERE}/relay/target/release",
                    help="where bench/relay's relay and faulty are (cargo build --release --manifest-path bench/relay/Cargo.toml)")
    a = ap.parse_args()
    for sn in a.scenarios.split(","):
        if sn not in SCEN: raise SystemExit(f"unknown scenario {sn}; known: {', '.join(SCEN)}")
    os.makedirs(LISTS, exist_ok=True)
    print(f"{'scenario':10} {'tool':7} {'wall_s':>8} {'cpu_s':>7} {'rss_MiB':>8} {'MB/s':>8} {'vol/x':>7}  check")
    for sn in a.scenarios.split(","):
        s = dict(SCEN[sn])
        helper, scheme = helper_for(s, a.relay_bin)
        try:
            if helper: helper.start()
            port = helper.port if helper else NGINX[s["server"]][1]
            prefix = s.get("url_prefix", "")
            s["urls"] = [f"{scheme}://127.0.0.1:{port}/{prefix}{p}" for p in s["paths"]]
            run_scenario(a, sn, s, helper)
        finally:
            if helper: helper.stop()
        shutil.rmtree(OUT, ignore_errors=True)


def run_scenario(a, sn, s, helper):
    lst = f"{LISTS}/{sn}.txt"
    with open(lst, "w") as f: f.write("\n".join(s["urls"]) + "\n")
    total = sum(os.path.getsize(os.path.join(WWW, f)) for f in s["paths"])
    # Runs are interleaved (volley, peer, peer, volley, ...) so that drift in a
    # shared machine's load hits every tool alike.
    names = a.tools.split(",") + (["base"] if a.base and "base" not in a.tools else [])
    tools = [t for t in names if cmd_for(t, s, lst, f"{OUT}/{t}", a.ours, a.base) is not None]
    res = {t: dict(walls=[], cpus=[], rss=[], check="ok", faults=[]) for t in tools}
    per_run_server = s["server"] == "faulty"
    for i in range(a.runs):
        for tool in tools:
            out = f"{OUT}/{tool}"
            cmd = cmd_for(tool, s, lst, out, a.ours, a.base)
            shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
            w, c, m, rc, err = run_once(cmd, s.get("timeout", 600))
            if per_run_server:
                # Its count for this run, and a fresh faulty (same port, same seed) for the
                # next: every run meets the same faults.
                res[tool]["faults"].append(faults_of(helper.stop())); helper.start()
            v = verify(s, out, full=(i == 0 or s.get("full_check", False)))
            r = res[tool]
            if rc != 0 or v != "ok": r["check"] = f"rc={rc} {v} {err.strip()[:120]}"
            r["walls"].append(w)
            if rc != -1:  # a run that timed out has a wall time (the timeout) but no CPU or RSS
                r["cpus"].append(c); r["rss"].append(m)
            shutil.rmtree(out, ignore_errors=True)
    med = lambda t, k: statistics.median(res[t][k]) if res[t][k] else float("nan")
    base = med("volley", "walls") if "volley" in res else None
    for tool in tools:
        r = res[tool]
        w = med(tool, "walls")
        ratio = f"{base / w:5.2f}x" if base else ""
        rss = f"{max(r['rss']):8.1f}" if r["rss"] else f"{'-':>8}"
        cpu = f"{med(tool, 'cpus'):7.2f}" if r["cpus"] else f"{'-':>7}"
        mbs = f"{total/w/1e6:8.1f}" if r["rss"] else f"{'-':>8}"
        print(f"{sn:10} {tool:7} {w:8.2f} {cpu} {rss} {mbs} {ratio:>7}  {r['check']}", flush=True)
    peers = [t for t in tools if t not in ("volley", "base")]
    # CPU and RSS are compared among the peers that finished a run in time.
    measured = [t for t in peers if res[t]["rss"]]
    if "volley" in res and res["volley"]["rss"] and measured:
        best = min(peers, key=lambda t: med(t, "walls"))
        v = res["volley"]
        print(f"{sn:10} volley / best peer ({best}): wall {med('volley', 'walls') / med(best, 'walls'):.2f}x, "
              f"cpu {med('volley', 'cpus') / max(min(med(t, 'cpus') for t in measured), 1e-9):.2f}x of the least, "
              f"rss {max(v['rss']) / min(max(res[t]['rss']) for t in measured):.2f}x of the least", flush=True)
        if s.get("paced"):
            print(f"{sn:10} pacing floor, one request per connection: {pacing_floor(total, s['conns']):.2f} s; "
                  f"0.9x of {best}: {0.9 * med(best, 'walls'):.2f} s", flush=True)
        cmp = [t for t in s.get("compare", ()) if t in res]
        if cmp:
            faster = min(cmp, key=lambda t: med(t, "walls"))
            print(f"{sn:10} volley / the faster of {' and '.join(cmp)} ({faster}): "
                  f"wall {med('volley', 'walls') / med(faster, 'walls'):.2f}x", flush=True)
    if s.get("floor"):
        r = s["relay"]
        floor = total / (s["conns"] * r["rate"])
        setup = (3 if s["urls"][0].startswith("https:") else 2) * r["rtt_ms"] / 1000
        ratios = ", ".join(f"{t} {'>' if not res[t]['rss'] else ''}{med(t, 'walls') / floor:.2f}x" for t in tools)
        print(f"{sn:10} floor {total / MiB:.0f} MiB / ({s['conns']} x {r['rate'] / MiB:.0f} MiB/s) = {floor:.2f} s"
              + (f" (+ setup, at least {setup:.2f} s: handshakes and the first request)" if setup else "")
              + f"; wall / floor: {ratios}", flush=True)
    if any(res[t]["faults"] for t in tools):
        def fmt(t):
            f = [x for x in res[t]["faults"] if x]
            if not f: return f"{t} ?"
            return f"{t} {statistics.median(x[1] for x in f):.0f} of {statistics.median(x[0] for x in f):.0f}"
        print(f"{sn:10} faults met per run (median, of requests): {', '.join(fmt(t) for t in tools)}", flush=True)


if __name__ == "__main__":
    main()
