"""Services and clients of bench/dataplane.sh, the same on every path measured.

  serve SINK SOURCE ECHO BYTES   sink: reads to EOF, answers the count; source: sends BYTES
                                 then closes; echo: answers what it reads
  nc HOST PORT                   stdin to a TCP connection and back (half-closing), for rathole
  fwd BYTES CMD...               BYTES into CMD's stdin, then EOF; prints seconds until the
                                 sink's count comes back on CMD's stdout
  rev BYTES CMD...               prints seconds until BYTES came out of CMD's stdout
  rtt N CMD... [-- CMD2...]      N round trips of 64 bytes on each connection, taken in turn;
                                 prints the median(s) in microseconds
  probe HOST PORT                exits 0 once a round trip to an echo service works
"""
import os
import socket
import subprocess
import sys
import threading
import time

CHUNK = 256 * 1024


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    return s


def serve(sink, source, echo, nbytes):
    def sink_conn(c):
        n = 0
        while True:
            b = c.recv(CHUNK)
            if not b:
                break
            n += len(b)
        c.sendall(b"%d\n" % n)
        c.close()

    def source_conn(c):
        block = b"\x5a" * CHUNK
        left = nbytes
        while left > 0:
            k = min(left, CHUNK)
            c.sendall(block[:k])
            left -= k
        c.close()

    def echo_conn(c):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        c.close()

    def loop(s, handler):
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    for port, h in ((sink, sink_conn), (source, source_conn), (echo, echo_conn)):
        threading.Thread(target=loop, args=(listen(port), h), daemon=True).start()
    threading.Event().wait()


def nc(host, port):
    c = socket.create_connection((host, port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def up():
        while True:
            b = os.read(0, CHUNK)
            if not b:
                c.shutdown(socket.SHUT_WR)
                return
            c.sendall(b)

    threading.Thread(target=up, daemon=True).start()
    while True:
        b = c.recv(CHUNK)
        if not b:
            return
        os.write(1, b)


def spawn(cmd):
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)


def fwd(nbytes, cmd):
    p = spawn(cmd)
    block = b"\xa5" * CHUNK

    def feed():
        left = nbytes
        while left > 0:
            k = min(left, CHUNK)
            p.stdin.write(block[:k])
            left -= k
        p.stdin.close()

    t0 = time.monotonic()
    threading.Thread(target=feed, daemon=True).start()
    out = p.stdout.read()
    dt = time.monotonic() - t0
    p.wait()
    if out.strip() != str(nbytes).encode():
        sys.exit(f"sink counted {out!r}, sent {nbytes}")
    print(f"{dt:.3f}")


def rev(nbytes, cmd):
    p = spawn(cmd)
    t0 = time.monotonic()
    n = 0
    while n < nbytes:
        b = p.stdout.read(CHUNK)
        if not b:
            break
        n += len(b)
    dt = time.monotonic() - t0
    p.stdin.close()
    p.wait()
    if n != nbytes:
        sys.exit(f"received {n} of {nbytes}")
    print(f"{dt:.3f}")


def rtt(count, cmds):
    """Round trips on each command's connection in turn, so that both see the same load."""
    procs = [spawn(c) for c in cmds]
    msg = b"m" * 64
    times = [[] for _ in procs]
    for i in range(count + 10):
        for p, t in zip(procs, times):
            t0 = time.perf_counter()
            p.stdin.write(msg)
            got = b""
            while len(got) < 64:
                b = p.stdout.read(64 - len(got))
                if not b:
                    sys.exit("connection closed during round trips")
                got += b
            if i >= 10:  # the first ones warm the path up
                t.append(time.perf_counter() - t0)
    for p in procs:
        p.stdin.close()
        p.wait()
    print(" ".join(f"{sorted(t)[len(t) // 2] * 1e6:.0f}" for t in times))


def probe(host, port):
    try:
        c = socket.create_connection((host, port), timeout=2)
        c.settimeout(2)
        c.sendall(b"x")
        sys.exit(0 if c.recv(1) == b"x" else 1)
    except OSError:
        sys.exit(1)


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "serve":
        serve(int(a[1]), int(a[2]), int(a[3]), int(a[4]))
    elif a[0] == "nc":
        nc(a[1], int(a[2]))
    elif a[0] == "fwd":
        fwd(int(a[1]), a[2:])
    elif a[0] == "rev":
        rev(int(a[1]), a[2:])
    elif a[0] == "rtt":
        rest = a[2:]
        cut = rest.index("--") if "--" in rest else len(rest)
        rtt(int(a[1]), [c for c in (rest[:cut], rest[cut + 1 :]) if c])
    elif a[0] == "probe":
        probe(a[1], int(a[2]))
