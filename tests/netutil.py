"""Free loopback ports for tests and benchmarks that start servers.

A probed port is free when probed; another process can take it before the
server binds, so servers that can bind port 0 should, and the others retry.
Ports are probed at random below the kernel's ephemeral range: the ports the
kernel hands to outgoing connections (every test's HTTP and database clients,
in both of the test run's workers) are never one of them, so the window between
the probe and the bind is only another probe's, one chance in about 20 000.
"""
import random
import socket


def _below_ephemeral():
    """The first port of the kernel's ephemeral range (32768 where it is not known)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS = range(10000, max(_below_ephemeral(), 20000))
_pick = random.Random().choice   # its own generator: tests that seed `random` (Hypothesis
                                 # does) must not make both workers probe the same ports


def free_port(kind=socket.SOCK_STREAM):
    """A port free on 127.0.0.1 for kind (SOCK_STREAM: TCP, SOCK_DGRAM: UDP)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", _pick(_PORTS)))
            except OSError:
                continue
            return s.getsockname()[1]
    with socket.socket(socket.AF_INET, kind) as s:   # no luck: the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_tcp_port():
    return free_port(socket.SOCK_STREAM)


def free_udp_port():
    return free_port(socket.SOCK_DGRAM)


def free_udp_ports(n):
    """p such that p .. p+n-1 are all free on 127.0.0.1 (UDP) when probed."""
    for _ in range(50):
        held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)]
        try:
            port = free_port(socket.SOCK_DGRAM)
            held[0].bind(("127.0.0.1", port))
            for k in range(1, n):
                held.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                held[-1].bind(("127.0.0.1", port + k))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no range of %d free UDP ports" % n)


def bind_retrying(start, kind=socket.SOCK_DGRAM, attempts=5):
    """start(port) on a probed free port, probing again while it is taken; its result."""
    for attempt in range(attempts):
        port = free_port(kind)
        try:
            return start(port)
        except OSError:  # taken between the probe and the bind
            if attempt == attempts - 1:
                raise
