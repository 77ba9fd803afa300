#!/usr/bin/env python3
"""Checks that the relay passes on half-closes and resets, in each of its modes.

    bench/relay/check.py [RELAY]      (default: bench/relay/target/release/relay)

For the shaped queue (--rtt-ms 40), the user-space queue unshaped (--copy) and
splice (no options), against a server in this script:
  halfclose    the client sends 100,000 bytes and shuts down its write half; the
               server reads to EOF, answers and closes: the answer must arrive
               (and at 40 ms, after about two round trips: handshake and data);
  reset        the server sends 1,000 bytes and resets: the client must get the
               bytes, then a reset (not an EOF);
  clientreset  the client sends, then resets: the server must see a reset.
Exits 1 if any check fails.
"""
import os, re, socket, struct, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
RELAY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "target/release/relay")
LINGER0 = struct.pack("ii", 1, 0)


def server(behaviour, ls, seen):
    c, _ = ls.accept()
    if behaviour == "halfclose":
        data = b""
        while d := c.recv(65536):
            data += d
        c.sendall(b"got %d" % len(data))
        c.close()
    elif behaviour == "reset":
        c.recv(10)
        c.sendall(b"x" * 1000)
        time.sleep(0.05)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        c.close()
    else:
        try:
            while c.recv(65536):
                pass
            seen.append("eof")
        except ConnectionResetError:
            seen.append("reset")


def one(args, behaviour):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen()
    seen = []
    th = threading.Thread(target=server, args=(behaviour, ls, seen), daemon=True)
    th.start()
    p = subprocess.Popen([RELAY, "--listen", "127.0.0.1:0", "--upstream", f"127.0.0.1:{ls.getsockname()[1]}"] + args,
                         stdout=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"127\.0\.0\.1:(\d+) ->", p.stdout.readline()).group(1))
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5)
        t = time.monotonic()
        if behaviour == "halfclose":
            s.sendall(b"a" * 100000)
            s.shutdown(socket.SHUT_WR)
            r = b""
            while d := s.recv(100):
                r += d
            return r == b"got 100000", f"{r!r} in {time.monotonic() - t:.3f} s"
        if behaviour == "reset":
            s.sendall(b"hi")
            r = b""
            try:
                while d := s.recv(100):
                    r += d
                return False, f"EOF after {len(r)} bytes, no reset"
            except ConnectionResetError:
                return len(r) == 1000, f"reset after {len(r)} bytes in {time.monotonic() - t:.3f} s"
        s.sendall(b"z" * 5000)
        time.sleep(0.1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
        s.close()
        th.join(5)
        return seen == ["reset"], f"the server saw {seen[0] if seen else 'nothing'}"
    except (OSError, AttributeError) as e:
        return False, f"{type(e).__name__}: {e}"
    finally:
        p.kill()
        p.wait()
        ls.close()


def main():
    ok = True
    for args in (["--rtt-ms", "40"], ["--copy"], []):
        for b in ("halfclose", "reset", "clientreset"):
            good, what = one(args, b)
            ok &= good
            print(f"{'ok  ' if good else 'FAIL'} {' '.join(args) or 'splice':12} {b:12} {what}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
