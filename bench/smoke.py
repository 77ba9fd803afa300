#!/usr/bin/env python3
"""CI-sized smoke run of the benchmark: volley only, correctness, not speed.

    bench/smoke.py [PATH-TO-VOLLEY] [--relay-bin DIR]      (default: target/debug/volley)

Serves a few hundred generated files (1 byte to 64 KiB, plus two of 3 MiB)
from a loopback HTTP/1.1 server in this process (Python's standard library,
no nginx needed), downloads them with volley the way the benchmark does
(`-i LIST -j 16`, the large ones split: `connections=4` on their list
lines), and checks that
every file arrived byte-identical, that no `.part` or state file is left,
and that a rerun of the same command downloads nothing and exits 0. Prints
the wall time for information; exits 1 on any mismatch.

With --relay-bin DIR (where bench/relay's binaries are, built with
`cargo build --release --features h2serve --manifest-path bench/relay/Cargo.toml`),
a second part: another few hundred small files over HTTPS with HTTP/2, from
`h2serve` (hyper and rustls; no nginx needed) through `relay` at a 10 ms round
trip, with a CA and certificate `tls.sh` makes at run time (needs `openssl`),
`--ca-cert`; every file byte for byte, a rerun that downloads nothing, and
h2serve's count: every request over HTTP/2, none over HTTP/1.1.
"""
import argparse, hashlib, http.server, os, random, re, shutil, subprocess, sys, tempfile, threading, time

from peers import Helper  # bench/peers.py: starts and stops bench/relay's binaries

FILES = 300
JOBS = 16
HERE = os.path.dirname(os.path.abspath(__file__))
RTT_MS = 10


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server would

    def log_message(self, *args):
        pass


def fail(msg):
    print(f"smoke: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def run(cmd):
    t = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p, time.monotonic() - t


def make_files(www, rng, names):
    os.makedirs(www)
    for n in names:
        size = 3 << 20 if n.startswith("big") else rng.choice([0, 1, 1023, 1024, 4096, 16384, 65536, rng.randrange(1, 65536)])
        with open(os.path.join(www, n), "wb") as f:
            f.write(rng.randbytes(size))


def check(cmd, www, out, names, what):
    """Runs volley, checks every file byte for byte, reruns: nothing may be rewritten. Returns the wall time."""
    p, wall = run(cmd)
    if p.returncode != 0:
        fail(f"{what}: exit {p.returncode}: {p.stderr.strip()}")
    got = sorted(os.listdir(out))
    if got != sorted(names):
        extra, missing = set(got) - set(names), set(names) - set(got)
        fail(f"{what}: files differ: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    for n in names:
        with open(os.path.join(www, n), "rb") as a, open(os.path.join(out, n), "rb") as b:
            if hashlib.sha256(a.read()).digest() != hashlib.sha256(b.read()).digest():
                fail(f"{what}: {n} differs from the served file")
    mtimes = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in names}
    p2, _ = run(cmd)
    if p2.returncode != 0:
        fail(f"{what}: rerun exit {p2.returncode}: {p2.stderr.strip()}")
    if any(os.stat(os.path.join(out, n)).st_mtime_ns != t for n, t in mtimes.items()):
        fail(f"{what}: the rerun rewrote a complete file")
    return wall


def plain(volley, root):
    """HTTP/1.1 from a server in this process; two large files split in 4."""
    www, out = os.path.join(root, "www"), os.path.join(root, "out")
    names = [f"s{i}.bin" for i in range(FILES)] + ["big0.bin", "big1.bin"]
    make_files(www, random.Random(6), names)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: Handler(*a, directory=www))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    lst = os.path.join(root, "list.txt")
    with open(lst, "w") as f:
        for n in names:
            f.write(f"{base}/{n}\n")
            if n.startswith("big"):
                f.write("  connections=4\n")
    cmd = [volley, "-q", "-i", lst, "-j", str(JOBS), "--max-per-host", str(JOBS), "--min-split-size", "1M", "-d", out]
    wall = check(cmd, www, out, names, "http")
    server.shutdown()
    total = sum(os.path.getsize(os.path.join(www, n)) for n in names)
    print(f"smoke: ok: {len(names)} files, {total / 1048576:.1f} MiB byte-identical in {wall:.2f} s; rerun downloaded nothing")


def h2(volley, bins, root):
    """HTTPS with HTTP/2 from h2serve, through the relay at RTT_MS."""
    tls = subprocess.run([os.path.join(HERE, "tls.sh"), os.path.join(root, "tls")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if tls.returncode != 0:
        fail(f"tls.sh: {tls.stderr.strip()}")
    tls = tls.stdout.strip()
    www, out = os.path.join(root, "h2www"), os.path.join(root, "h2out")
    names = [f"h{i}.bin" for i in range(FILES)]
    make_files(www, random.Random(7), names)
    h2s = Helper([os.path.join(bins, "h2serve"), "--root", www,
                  "--cert", os.path.join(tls, "server.pem"), "--key", os.path.join(tls, "server.key")])
    relay = None
    try:
        h2s.start()
        relay = Helper([os.path.join(bins, "relay"), "--upstream", f"127.0.0.1:{h2s.port}", "--rtt-ms", str(RTT_MS)]).start()
        rport = relay.port
        lst = os.path.join(root, "h2list.txt")
        with open(lst, "w") as f:
            f.writelines(f"https://127.0.0.1:{rport}/{n}\n" for n in names)
        cmd = [volley, "-q", "-i", lst, "-j", str(JOBS), "--max-per-host", str(JOBS), "-d", out, "--ca-cert", os.path.join(tls, "ca.pem")]
        wall = check(cmd, www, out, names, "https h2")
        relay.stop()
        counts = h2s.stop()
    finally:
        for h in (relay, h2s):
            if h and h.p:
                h.p.kill()
    m = re.search(r"h2 (\d+) connections (\d+) requests, http/1.1 (\d+) connections (\d+) requests", counts)
    if not m:
        fail(f"h2serve gave no counts: {counts!r}")
    h2c, h2r, h1c, h1r = map(int, m.groups())
    if h1c or h1r or h2r < len(names):
        fail(f"https h2: expected every request over HTTP/2: {counts.strip()}")
    total = sum(os.path.getsize(os.path.join(www, n)) for n in names)
    print(f"smoke: ok: HTTPS HTTP/2 through the relay ({RTT_MS} ms round trip): {len(names)} files, {total / 1048576:.1f} MiB "
          f"byte-identical in {wall:.2f} s ({h2r} requests on {h2c} HTTP/2 connections); rerun downloaded nothing")


def main():
    ap = argparse.ArgumentParser(description="CI-sized smoke run of the benchmark (correctness, not speed)")
    ap.add_argument("volley", nargs="?", default="target/debug/volley")
    ap.add_argument("--relay-bin", help="where bench/relay's relay and h2serve are: adds the HTTPS HTTP/2 part")
    a = ap.parse_args()
    volley = os.path.abspath(a.volley)
    if not os.access(volley, os.X_OK):
        fail(f"{volley} is not an executable; build it first (cargo build)")
    root = tempfile.mkdtemp(prefix="volley-smoke-")
    try:
        plain(volley, root)
        if a.relay_bin:
            h2(volley, os.path.abspath(a.relay_bin), root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
