"""Free loopback ports for tests and benchmarks that start servers.

A probed port is free when probed; another process can take it before the
server binds, so servers that can bind port 0 should, and the others retry.
"""
import socket


def free_port(kind=socket.SOCK_STREAM):
    """A port free on 127.0.0.1 for kind (SOCK_STREAM: TCP, SOCK_DGRAM: UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
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
            held[0].bind(("127.0.0.1", 0))
            port = held[0].getsockname()[1]
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
