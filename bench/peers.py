#!/usr/bin/env python3
"""Side-by-side download benchmark against peers on a loopback nginx.

peers.py [--runs N] [--tools a,b] [--scenarios s,t] [--ours PATH] [--base PATH]
Prints one row per (scenario, tool): median wall s, user+sys CPU s, peak RSS MiB, MB/s,
volley's median wall time divided by the tool's (vol/x: 1.05x means volley took 5% longer), ok.
Runs are interleaved across tools.
Outputs go to tmpfs so the disk is out of the measurement.
"""
import argparse, hashlib, os, shutil, statistics, subprocess, sys, time

BASE = "http://127.0.0.1:18080"
WWW = "/dev/shm/dmbench/www"
OUT = "/dev/shm/dmbench/out"
LISTS = "/dev/shm/dmbench/lists"

SCEN = {
    "small":     dict(urls=[f"{BASE}/small/f{i}.bin" for i in range(2000)], files=[f"small/f{i}.bin" for i in range(2000)], jobs=16, conns=1),
    "tiny":      dict(urls=[f"{BASE}/tiny/t{i}.bin" for i in range(10000)], files=[f"tiny/t{i}.bin" for i in range(10000)], jobs=32, conns=1),
    "large":     dict(urls=[f"{BASE}/large/L{i}.bin" for i in range(4)], files=[f"large/L{i}.bin" for i in range(4)], jobs=4, conns=1),
    "throttled": dict(urls=[f"{BASE}/slow/large/L0.bin"], files=["large/L0.bin"], jobs=1, conns=16, paced=True),
    # 100,000 URLs: peak memory of a long list (target: under 64 MiB for volley).
    "many":      dict(urls=[f"{BASE}/many/m{i}.bin" for i in range(100000)], files=[f"many/m{i}.bin" for i in range(100000)], jobs=32, conns=1),
}

def cmd_for(tool, s, lst, out, ours, base=None):
    j, x = s["jobs"], s["conns"]
    if tool == "aria2c":
        return ["aria2c", "-q", "-i", lst, f"-j{j}", f"-x{x}", f"-s{x}", "-k1M", "-d", out,
                "--allow-overwrite=true", "--auto-file-renaming=false", "--file-allocation=none",
                "--summary-interval=0", "--console-log-level=error"]
    if tool == "wget2":
        c = ["wget2", "-q", f"--max-threads={max(j, x)}", "-i", lst, "-P", out, "--no-robots"]
        if x > 1: c.append("--chunk-size=16M")
        return c
    if tool == "curl":
        if x > 1: return None
        cfg = lst + ".curl"
        with open(cfg, "w") as f:
            for u in s["urls"]: f.write(f'url = "{u}"\n')
        return ["curl", "-s", "-Z", f"--parallel-max", str(j), "--output-dir", out, "--remote-name-all", "-K", cfg]
    if tool == "axel":
        if len(s["urls"]) != 1: return None
        return ["axel", "-q", "-n", str(x), "-o", out + "/", s["urls"][0]]
    if tool in ("volley", "base"):
        # "base": another build of volley (--base), e.g. before a change.
        ours = ours if tool == "volley" else base
        if not ours or not os.path.exists(ours): return None
        c = [ours, "-q", "-i", lst, "-j", str(j), "--max-per-host", str(max(j, x)), "-d", out]
        return c + ["-x", str(x)] if x > 1 else c
    raise SystemExit(f"unknown tool {tool}")

def digest(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while b := f.read(1 << 20): h.update(b)
    return h.hexdigest()

def verify(s, out, full):
    names = [os.path.basename(f) for f in s["files"]]
    for n in names:
        if not os.path.exists(os.path.join(out, n)): return f"missing {n}"
    sizes_ok = all(os.path.getsize(os.path.join(out, os.path.basename(f))) == os.path.getsize(os.path.join(WWW, f)) for f in s["files"])
    if not sizes_ok: return "size mismatch"
    if full:
        # Every file, byte for byte, on each tool's first run (sizes on the others).
        for f in s["files"]:
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

def run_once(cmd):
    t = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", "/tmp/dmbench.time"] + cmd
    r = subprocess.run(t, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    e, u, sy, m = open("/tmp/dmbench.time").read().split()[-4:]
    return float(e), float(u) + float(sy), int(m) / 1024, r.returncode, r.stderr.decode()[-300:]

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tools", default="aria2c,wget2,curl,axel,volley")
    ap.add_argument("--scenarios", default="small,large,throttled")
    ap.add_argument("--ours", default=os.environ.get("VOLLEY", "target/release/volley"), help="path of the volley binary")
    ap.add_argument("--base", help="another volley binary to run beside it as the tool 'base' (a build before a change)")
    a = ap.parse_args()
    os.makedirs(LISTS, exist_ok=True)
    print(f"{'scenario':10} {'tool':7} {'wall_s':>8} {'cpu_s':>7} {'rss_MiB':>8} {'MB/s':>8} {'vol/x':>7}  check")
    for sn in a.scenarios.split(","):
        s = SCEN[sn]
        lst = f"{LISTS}/{sn}.txt"
        with open(lst, "w") as f: f.write("\n".join(s["urls"]) + "\n")
        total = sum(os.path.getsize(os.path.join(WWW, f)) for f in s["files"])
        # Runs are interleaved (volley, peer, peer, volley, ...) so that drift in a
        # shared machine's load hits every tool alike.
        names = a.tools.split(",") + (["base"] if a.base and "base" not in a.tools else [])
        tools = [t for t in names if cmd_for(t, s, lst, f"{OUT}/{t}", a.ours, a.base) is not None]
        res = {t: dict(walls=[], cpus=[], rss=[], check="ok") for t in tools}
        for i in range(a.runs):
            for tool in tools:
                out = f"{OUT}/{tool}"
                cmd = cmd_for(tool, s, lst, out, a.ours, a.base)
                shutil.rmtree(out, ignore_errors=True); os.makedirs(out)
                w, c, m, rc, err = run_once(cmd)
                v = verify(s, out, full=(i == 0))
                r = res[tool]
                if rc != 0 or v != "ok": r["check"] = f"rc={rc} {v} {err.strip()[:120]}"
                r["walls"].append(w); r["cpus"].append(c); r["rss"].append(m)
                shutil.rmtree(out, ignore_errors=True)
        base = statistics.median(res["volley"]["walls"]) if "volley" in res else None
        for tool in tools:
            r = res[tool]
            w = statistics.median(r["walls"])
            ratio = f"{base / w:5.2f}x" if base else ""
            print(f"{sn:10} {tool:7} {w:8.2f} {statistics.median(r['cpus']):7.2f} {max(r['rss']):8.1f} {total/w/1e6:8.1f} {ratio:>7}  {r['check']}", flush=True)
        peers = [t for t in tools if t not in ("volley", "base")]
        if "volley" in res and peers:
            med = lambda t, k: statistics.median(res[t][k])
            best = min(peers, key=lambda t: med(t, "walls"))
            v = res["volley"]
            print(f"{sn:10} volley / best peer ({best}): wall {med('volley', 'walls') / med(best, 'walls'):.2f}x, "
                  f"cpu {med('volley', 'cpus') / max(min(med(t, 'cpus') for t in peers), 1e-9):.2f}x of the least, "
                  f"rss {max(v['rss']) / min(max(res[t]['rss']) for t in peers):.2f}x of the least", flush=True)
            if s.get("paced"):
                print(f"{sn:10} pacing floor, one request per connection: {pacing_floor(total, s['conns']):.2f} s; "
                      f"0.9x of {best}: {0.9 * med(best, 'walls'):.2f} s", flush=True)
        shutil.rmtree(OUT, ignore_errors=True)

if __name__ == "__main__":
    main()
