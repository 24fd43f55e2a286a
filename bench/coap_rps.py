"""Requests per second of SPOT's device-side CoAP endpoint on CPython against aiocoap.

    python3 bench/coap_rps.py [seconds per server, default 6]   # a markdown table

Servers (each in its own process, one after the other, on 127.0.0.1), all serving
GET /heat_pump/flow_temp of a heat-pump Node, which answers 2.05 with CBOR 352:
  coap_loop     core.coap_binding.CoapDevice in ports/micropython/coap_loop.CoapLoop
                (the board's blocking socket loop, here on CPython)
  asyncio       the same CoapDevice in ports/cpython/coap_transport.serve_device
                (asyncio DatagramProtocol, as the simulators run thousands)
  aiocoap       aiocoap's server (udp6 transport) with the same CoapBinding as its
                resource (serve_device_aiocoap): the same resource, aiocoap's stack
  aiocoap-min   aiocoap's server with a resource returning the constant answer:
                aiocoap's own ceiling, no SPOT code at all
  raw-echo      a bare UDP loop answering every datagram with a canned 2.05 ACK:
                no CoAP at all, the ceiling of this load generator on this machine
Load generator (the same for all, in this process): a raw UDP blaster with 8
sockets, each keeping 4 CON GETs outstanding (message id and token per request,
not reused within a run below ~75 000 requests/s, so no answer comes from a
duplicate cache); it counts
2.05 answers per second after a 1 s warm-up. Requests unanswered for 1 s count as
lost and are replaced. 2 cores: the server gets one, the blaster the other.
"""
import asyncio
import os
import select
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

SOCKETS = 8
WINDOW = 4
EXPECT = b"\x19\x01\x60"
KINDS = ("coap_loop", "asyncio", "aiocoap", "aiocoap-min", "raw-echo")


def make_node():
    from spot.core.node import Node
    from spot.profiles import heat_pump
    node = Node([heat_pump], "hp-1")
    node.set(0x10, 8, 35.2)
    return node


# ---------------------------------------------------------------- servers (subprocess)

def serve(kind, port):
    if kind == "raw-echo":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", port))
        print("READY", flush=True)
        while True:
            data, addr = s.recvfrom(2048)
            # ACK 2.05, same message id and 2-byte token, Content-Format 60
            s.sendto(b"\x62\x45" + data[2:6] + b"\xc1\x3c\xff" + EXPECT, addr)
    if kind == "coap_loop":
        from spot.core.coap_binding import CoapDevice
        from spot.core.coap_endpoint import Endpoint
        from spot.ports.micropython.coap_loop import CoapLoop
        loop = CoapLoop(CoapDevice(make_node(), Endpoint()), "127.0.0.1", port)
        print("READY", flush=True)
        loop.run()
        return

    async def main():
        if kind == "asyncio":
            from spot.ports.cpython.coap_transport import serve_device
            await serve_device(make_node(), "127.0.0.1", port)
        elif kind == "aiocoap":
            from spot.ports.cpython.coap_transport import serve_device_aiocoap
            await serve_device_aiocoap(make_node(), "127.0.0.1", port)
        else:
            import aiocoap
            import aiocoap.resource

            class Value(aiocoap.resource.Resource):
                async def render_get(self, request):
                    return aiocoap.Message(payload=EXPECT, content_format=60)
            site = aiocoap.resource.Site()
            site.add_resource(["heat_pump", "flow_temp"], Value())
            await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port),
                                                        transports=["udp6"])
        print("READY", flush=True)
        await asyncio.Event().wait()
    asyncio.run(main())


# ---------------------------------------------------------------- load generator

def request(mid):
    """CON GET /heat_pump/flow_temp, token = the 2-byte message id."""
    m = mid.to_bytes(2, "big")
    return (b"\x42\x01" + m + m + b"\xb9heat_pump" + b"\x09flow_temp")


def blast(port, seconds, warmup=1.0):
    socks = []
    for _ in range(SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    nxt = [1] * SOCKETS
    pending = [dict() for _ in range(SOCKETS)]   # mid -> time sent
    poll = select.poll()
    for s in socks:
        poll.register(s, select.POLLIN)
    answered = lost = bad = 0
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + seconds
    counted = 0

    def send(i, now):
        # ids wrap only above ~75 000 requests/s (8 x 65536 in 7 s): only raw-echo,
        # which keeps no duplicate cache, gets there
        mid = nxt[i] & 0xFFFF
        nxt[i] = mid + 1
        pending[i][mid] = now
        socks[i].send(request(mid))

    now = time.monotonic()
    for i in range(SOCKETS):
        for _ in range(WINDOW):
            send(i, now)
    while True:
        now = time.monotonic()
        if now >= end:
            break
        for fd, _ in poll.poll(100):
            i = by_fd[fd]
            s = socks[i]
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                mid = (data[2] << 8) | data[3]
                if pending[i].pop(mid, None) is None:
                    continue
                if data[1] == 0x45 and data.endswith(EXPECT):
                    answered += 1
                    if now >= measure_from:
                        counted += 1
                else:
                    bad += 1
                send(i, now)
        for i in range(SOCKETS):
            old = [m for m, t in pending[i].items() if now - t > 1.0]
            for m in old:
                del pending[i][m]
                lost += 1
                send(i, now)
    for s in socks:
        s.close()
    return counted / seconds, lost, bad


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(kind, seconds):
    port = free_port()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind,
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        if line.strip() != b"READY":
            raise SystemExit("%s did not start: %s" % (kind, proc.stderr.read().decode()))
        return blast(port, seconds)
    finally:
        proc.kill()
        proc.wait(5)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    import aiocoap
    from importlib.metadata import version
    results = {kind: run(kind, seconds) for kind in KINDS}
    print("GET /heat_pump/flow_temp -> 2.05 CBOR, %d sockets x %d outstanding CON requests, "
          "%.0f s per server, CPython %s, aiocoap %s" % (
              SOCKETS, WINDOW, seconds, sys.version.split()[0], version("aiocoap")))
    print()
    print("| server | requests/s | lost | wrong answers |")
    print("|---|---:|---:|---:|")
    names = {
        "coap_loop": "SPOT CoapDevice in coap_loop (board loop)",
        "asyncio": "SPOT CoapDevice in asyncio serve_device",
        "aiocoap": "aiocoap server + SPOT CoapBinding (same resource)",
        "aiocoap-min": "aiocoap server, constant resource in a Site (no SPOT code)",
        "raw-echo": "bare UDP loop, canned answer (load generator ceiling)",
    }
    for kind in KINDS:
        rps, lost, bad = results[kind]
        print("| %s | %.0f | %d | %d |" % (names[kind], rps, lost, bad))
    ours, theirs = results["asyncio"][0], results["aiocoap"][0]
    print()
    print("SPOT asyncio / aiocoap (same resource): %.2f" % (ours / theirs if theirs else 0))
    del aiocoap


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
