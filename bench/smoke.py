#!/usr/bin/env python3
"""CI-sized smoke run of the benchmark: volley only, correctness, not speed.

    bench/smoke.py [PATH-TO-VOLLEY]      (default: target/debug/volley)

Serves a few hundred generated files (1 byte to 64 KiB, plus two of 3 MiB)
from a loopback HTTP/1.1 server in this process (Python's standard library,
no nginx needed), downloads them with volley the way the benchmark does
(`-i LIST -j 16`, and the large ones split with `-x 4`), and checks that
every file arrived byte-identical, that no `.part` or state file is left,
and that a rerun of the same command downloads nothing and exits 0. Prints
the wall time for information; exits 1 on any mismatch.
"""
import hashlib, http.server, os, random, shutil, subprocess, sys, tempfile, threading, time

FILES = 300
JOBS = 16


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


def main():
    volley = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/volley")
    if not os.access(volley, os.X_OK):
        fail(f"{volley} is not an executable; build it first (cargo build)")
    root = tempfile.mkdtemp(prefix="volley-smoke-")
    try:
        www, out = os.path.join(root, "www"), os.path.join(root, "out")
        os.makedirs(www)
        rng = random.Random(6)
        names = [f"s{i}.bin" for i in range(FILES)] + ["big0.bin", "big1.bin"]
        for n in names:
            size = 3 << 20 if n.startswith("big") else rng.choice([0, 1, 1023, 1024, 4096, 16384, 65536, rng.randrange(1, 65536)])
            with open(os.path.join(www, n), "wb") as f:
                f.write(rng.randbytes(size))
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
        p, wall = run(cmd)
        if p.returncode != 0:
            fail(f"exit {p.returncode}: {p.stderr.strip()}")
        got = sorted(os.listdir(out))
        if got != sorted(names):
            extra, missing = set(got) - set(names), set(names) - set(got)
            fail(f"files differ: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
        for n in names:
            with open(os.path.join(www, n), "rb") as a, open(os.path.join(out, n), "rb") as b:
                if hashlib.sha256(a.read()).digest() != hashlib.sha256(b.read()).digest():
                    fail(f"{n} differs from the served file")
        mtimes = {n: os.stat(os.path.join(out, n)).st_mtime_ns for n in names}
        p2, _ = run(cmd)
        if p2.returncode != 0:
            fail(f"rerun exit {p2.returncode}: {p2.stderr.strip()}")
        if any(os.stat(os.path.join(out, n)).st_mtime_ns != t for n, t in mtimes.items()):
            fail("the rerun rewrote a complete file")
        server.shutdown()
        total = sum(os.path.getsize(os.path.join(www, n)) for n in names)
        print(f"smoke: ok: {len(names)} files, {total / 1048576:.1f} MiB byte-identical in {wall:.2f} s; rerun downloaded nothing")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
