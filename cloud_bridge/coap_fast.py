"""The bridge's plain-UDP CoAP (coap://) on SPOT's own sans-I/O endpoint.

FastBusServer serves the bus resource /s for cloud_bridge.coap_link exactly as
ports/cpython/coap_transport.BridgeCoapServer does on aiocoap (the same
BusRoutes: on_frame callback, `devices` and `consumes` routes; the same
response codes), on core.coap_endpoint.Endpoint driven by one asyncio
DatagramProtocol: a tenth of aiocoap's CPU per request (bench/coap_rps.py).
It also sends the bridge's commands (POST /s) and observations (FETCH /s,
Observe 0) to the devices that registered through it. aiocoap stays for
coaps:// (DTLS, port + 1) and, when the bridge has an OSCORE keyring, for the
plain port as well (coap_link decides); the wire is the same either way.

Stored = acknowledged: a POST to /s is answered in the ACK (hold_acks: no empty
ACK first) only once the bridge's callback returned, i.e. after its rows were
committed; a retransmission meanwhile is ignored, one after it is answered
from the endpoint's cache without calling the bridge again. The cache holds
the last max_dedupe message ids of all peers (FleetEndpoint), oldest dropped
first. A remote is the socket address (host, port[, flow, scope]).

The datagram devices send most, a confirmable POST to /s with only the
options Uri-Path "s" and Content-Format 65000 and a frame, is recognised by
its bytes (FastBusServer._bus_post) and goes straight to the bridge, without
the endpoint's message and request objects; its 2.04 ACK, once the frame is
stored, is four bytes and the token (with Content-Format and the frame when
the answer is one, e.g. an ANNOUNCE's RESULT once its registration
committed), cached for retransmissions as the endpoint caches its answers.
Every other datagram, and every other answer (an ERROR frame, a 5.00), takes
the endpoint's general path. An ANNOUNCE answered by callback records its
sender as the device's route when the answer is a RESULT, as BusRoutes does.
"""
import asyncio
import collections
import logging
import os
import socket
from functools import partial

from ..core import coap
from ..core import frame as F
from ..core.coap_binding import BUS, CF_SPOT
from ..core.coap_endpoint import Endpoint
from ..core.coap_server import Request, Response
from ..core.coap_client import CoapBusy, EV_RESPONSE, EV_NOTIFICATION
from ..ports.cpython.coap_transport import BusRoutes, DeviceServer, reply_code
from .tasks import cancel_and_wait

log = logging.getLogger("spot.bridge.coap")

# a POST to /s as devices send it: after the token, Uri-Path "s" then Content-Format
# 65000 (or none) then the payload marker
_POST_S_CF = b"\xb1s\x12\xfd\xe8\xff"
_POST_S = b"\xb1s\xff"
_ACK_CHANGED = (2 << 5) | 4               # 2.04 in an ACK
_CF_SPOT_PAYLOAD = b"\xc2\xfd\xe8\xff"    # option Content-Format 65000, payload marker
_MAX_PIGGY = 1024    # reply frames up to this size written in the ACK here (the endpoint: more)

PENDING = object()  # from on_frame_nowait: its answer callback comes later

_LINKS = b'</s>;rt="spot.bus";ct=65000'   # /.well-known/core (RFC 6690)
_LINK_FORMAT = 40
_CON_LIFETIME_MS = 247000                 # EXCHANGE_LIFETIME (RFC 7252 4.8.2)
_NON_LIFETIME_MS = 145000


def _random_ahead(size=128):
    """32 random bits a call from os.urandom, drawn `size` bytes at a time. The bridge
    draws two for each command it sends (token, ACK timeout) and each system call lets
    the GIL go: with the store's thread busy one took about 0.1 ms instead of 0.4 us
    (a twentieth of the loop in a 10 000-device fan-out). A board keeps core's
    default, one call a draw, and no buffer in its heap."""
    ahead = memoryview(b"")

    def rand():
        nonlocal ahead
        if len(ahead) < 4:
            ahead = memoryview(os.urandom(size))
        bits = int.from_bytes(ahead[:4], "big")
        ahead = ahead[4:]
        return bits
    return rand


class FleetEndpoint(Endpoint):
    """core's Endpoint with a dedupe cache sized for a fleet: in arrival order, so the
    oldest entry goes first in O(1) when it expired or the cache is full (core's own
    scans the table, right for the handful of entries a board keeps)."""

    def __init__(self, handler, **options):
        super().__init__(handler, **options)
        self._dedupe = collections.OrderedDict()

    def _remember(self, key, now, reply, mtype):
        cache = self._dedupe
        while cache:
            oldest = next(iter(cache))
            if cache[oldest][0] > now and len(cache) < self.max_dedupe:
                break
            del cache[oldest]
        cache.pop(key, None)
        con = mtype == coap.CON
        cache[key] = (now + (_CON_LIFETIME_MS if con else _NON_LIFETIME_MS),
                      reply if con else None)


class _Driver(DeviceServer):
    """The endpoint on its UDP socket (DeviceServer's clock and timers); client events
    go to the server after every turn."""

    def __init__(self, endpoint, on_events, on_bad, on_post=None):
        super().__init__(endpoint)
        self.on_events = on_events
        self.on_bad = on_bad
        self.on_post = on_post   # on_post(data, addr): True when it took the datagram
        self._state = None   # what the timer was set for (see _schedule)

    def _schedule(self):
        """Set the timer only when the endpoint's timers may have moved: it sent something
        (a new CON, a retransmission) or its pending transmissions or exchanges changed.
        next_timeout() looks at every one of them, too much to do for every datagram of
        a fleet (a NOTIFY changes none of them: its answer goes out later, in a batch)."""
        ep = self.device
        state = (ep.stats["tx"], len(ep._pending), len(ep.exchanges))
        if state == self._state and self._timer is not None:
            return
        self._state = state
        if self._timer is not None and not ep._outbox:
            # No deadline a change makes is sooner than `soonest` (a new or resent CON
            # waits ack_timeout_ms at least, an exchange response_wait_ms), and removals
            # only make them later: a timer that fires by then is early enough, and when
            # it fires (_tick) every deadline is looked at. Without this, a fan-out looked
            # at its hundreds of exchanges in flight for every datagram sent or answered.
            soonest = self.now() + min(ep.ack_timeout_ms, ep.response_wait_ms)
            if self._due > soonest:
                self._cancel()
                self._due = soonest
                self._timer = self.loop.call_at(soonest / 1000.0, self._tick)
            return
        super()._schedule()

    def datagram_received(self, data, addr):
        if self.on_post is not None and self.on_post(data, addr):
            return
        stats = self.device.stats
        bad = stats["bad"]
        self._run(self.device.receive, data, addr)
        if stats["bad"] != bad:   # not CoAP, or a request it cannot read: answered or dropped
            self.on_bad(addr)

    def _run(self, fn, *args):
        super()._run(fn, *args)
        events = self.device.events()
        if events:
            self.on_events(events)


class _UdpSocket:
    """The driver's UDP socket on the loop, read a burst per wake-up: asyncio's datagram
    transport reads one datagram per wake-up, so under load the loop would select
    once per datagram. What the kernel cannot take now is sent when it can, in
    order (as asyncio's transport does). The transport interface DeviceServer uses."""

    def __init__(self, loop, sock, protocol, most=256, size=65536):
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        self.most = most             # datagrams read per wake-up at most
        # bytes read of a datagram: one more than the endpoint takes is enough to refuse a
        # larger one as it would whole (4.13 from its header), and the interpreter makes
        # a buffer of this size for every datagram read before trimming it
        self.size = size
        self._backlog = collections.deque()
        self._closing = False
        loop.add_reader(sock.fileno(), self._read)
        protocol.connection_made(self)

    def get_extra_info(self, name, default=None):
        if name == "sockname":
            return self.sock.getsockname()
        return self.sock if name == "socket" else default

    def is_closing(self):
        return self._closing

    def _read(self):
        sock, protocol, size = self.sock, self.protocol, self.size
        for _ in range(self.most):
            try:
                data, addr = sock.recvfrom(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:   # an ICMP error for an earlier send
                protocol.error_received(e)
                return
            protocol.datagram_received(data, addr)
            if self._closing:
                return

    def sendto(self, data, addr):
        if self._closing:
            return
        if not self._backlog:
            try:
                self.sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self.loop.add_writer(self.sock.fileno(), self._write)
            except OSError as e:
                self.protocol.error_received(e)
                return
        self._backlog.append((data, addr))

    def _write(self):
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                self.sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.protocol.error_received(e)
            backlog.popleft()
        self.loop.remove_writer(self.sock.fileno())

    def close(self):
        if self._closing:
            return
        self._closing = True
        self.loop.remove_reader(self.sock.fileno())
        if self._backlog:
            self.loop.remove_writer(self.sock.fileno())
            self._backlog.clear()
        self.sock.close()
        self.protocol.connection_lost(None)


class FastSubscription:
    """An observation of a device's /s (as coap_transport.BusSubscription): `result`
    is the first answer's frame; iterate for the NOTIFY frames; cancel() ends it."""

    def __init__(self, server, token):
        self.server = server
        self.token = token
        self.result = None
        self.first = asyncio.get_running_loop().create_future()
        self._notes = asyncio.Queue()

    def take(self, ev):
        # over: an answer without Observe (the device keeps no observation), an error
        # notification, a Reset, a timeout
        ended = ev.observe is None
        if not self.first.done():
            if ev.kind == EV_RESPONSE:
                self.result = ev.payload or None
                self.first.set_result(ev)
            else:
                self.first.set_exception(ConnectionError("subscription failed (%d)" % ev.kind))
        elif ev.kind == EV_NOTIFICATION and ev.code >> 5 == 2:
            self._notes.put_nowait(ev.payload)
        else:
            ended = True
        if ended:
            self._notes.put_nowait(ConnectionError("observation ended (%d, code %d)"
                                                   % (ev.kind, ev.code)))
            self.server.forget_exchange(self.token)

    def __aiter__(self):
        return self._frames()

    async def _frames(self):
        while True:
            note = await self._notes.get()
            if note is None:
                return
            if isinstance(note, Exception):
                raise note
            yield note

    def cancel(self):
        if self.server.forget_exchange(self.token):
            self._notes.put_nowait(None)


class FastBusServer(BusRoutes):
    """/s over plain UDP on core's endpoint; interface of BridgeCoapServer (on_frame,
    devices, consumes, start, stop, send_frame, subscribe)."""

    def __init__(self, host="127.0.0.1", port=5683, on_frame=None, on_unparsable=None,
                 max_frames=1000, max_dedupe=65536, max_exchanges=4096,
                 receive_buffer=4 << 20, on_frame_nowait=None):
        self.host = host
        self.port = port
        self.on_frame = on_frame
        # on_frame_nowait(frame, remote, answer): on_frame without a task per request,
        # used instead of it when given: the reply frame (or None) now, or PENDING
        # (answer(reply, error) is called later)
        self.on_frame_nowait = on_frame_nowait
        self.on_unparsable = on_unparsable
        self.devices = {}      # device id -> socket address
        self.consumes = {}     # device id -> tuple of service ids it consumes
        self.frames = []       # (remote, frame) received without a callback
        self.max_frames = max_frames
        self.receive_buffer = receive_buffer   # SO_RCVBUF asked for, bytes
        self.unparsable = 0
        self.endpoint = FleetEndpoint(
            self._handle, rand=_random_ahead(), hold_acks=True, max_body=65536, max_datagram=4096,
            max_dedupe=max_dedupe, max_pending=max_exchanges, max_exchanges=max_exchanges,
            max_buffers=1024, max_observers=0, max_events=max_exchanges * 4)
        self.driver = None
        self._exchanges = {}   # token -> future of a command, or a FastSubscription
        self._serving = set()  # tasks answering requests
        self._flush_due = False

    async def start(self):
        loop = asyncio.get_running_loop()
        self.driver = _Driver(self.endpoint, self._events, self._unparsable,
                              None if self.on_frame_nowait is None else self._bus_post)
        family, _, _, _, where = (await loop.getaddrinfo(
            self.host, self.port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE))[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            try:   # room for a burst of the fleet's datagrams (the kernel caps it at rmem_max)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            except OSError:
                pass
            sock.bind(where)
            _UdpSocket(loop, sock, self.driver, size=self.endpoint.max_datagram + 1)
        except BaseException:
            sock.close()
            self.driver = None
            raise
        self.port = sock.getsockname()[1]
        return self

    async def stop(self):
        await cancel_and_wait(list(self._serving))
        for token in list(self._exchanges):
            item = self._exchanges[token]
            if isinstance(item, FastSubscription):
                item.cancel()
            elif not item.done():
                item.set_exception(ConnectionError("bridge stopping"))
        self._exchanges.clear()
        if self.driver is not None:
            self.driver.close()
            self.driver = None

    # ---- requests from devices ------------------------------------------------------

    def _unparsable(self, addr):
        self.unparsable += 1
        if self.on_unparsable is not None:
            self.on_unparsable(addr, ValueError("not a CoAP message the endpoint can read"))

    def _handle(self, req):
        path = req.path
        if len(path) == 1 and path[0] == BUS:
            if req.code != coap.POST:
                return Response(coap.METHOD_NOT_ALLOWED)
            if req.content_format is not None and req.content_format != CF_SPOT:
                return Response(coap.UNSUPPORTED_CONTENT_FORMAT)
            if not req.payload:
                return Response(coap.BAD_REQUEST, b"no frame")
            if self.on_frame_nowait is not None:
                # an answer known now is returned, not respond()ed: the endpoint caches
                # what the handler returns for the retransmissions (a respond() inside
                # the handler would come before its cache entry, and be lost to them)
                try:
                    out = self.on_frame_nowait(req.payload, req.addr, self._routing(
                        req.payload, req.addr, partial(self._reply, req)))
                except Exception as e:   # a bug, not the device's fault: 5.00
                    return self._response(None, e)
                return None if out is PENDING else self._response(out)
            self._serve_later(req)
            return None   # answered by _serve, piggy-backed on the ACK
        if path == [".well-known", "core"] and req.code == coap.GET:
            return Response(coap.CONTENT, _LINKS, _LINK_FORMAT)
        return Response(coap.NOT_FOUND)

    def _bus_post(self, data, addr):
        """The usual device datagram, a CON POST to /s of a frame with no other options
        than Uri-Path and Content-Format 65000, read from its bytes and handed to
        on_frame_nowait as _handle does; False for any other datagram (the endpoint
        reads it). A retransmission is answered from the endpoint's duplicate cache."""
        n = len(data)
        if n < 8 or data[0] & 0xF0 != 0x40 or data[1] != 2:   # CoAP 1, CON, 0.02 POST
            return False
        tkl = data[0] & 15
        i = 4 + tkl
        if data[i:i + 6] == _POST_S_CF:
            j = i + 6
        elif data[i:i + 3] == _POST_S:
            j = i + 3
        else:
            return False
        ep = self.endpoint
        if tkl > 8 or j >= n or n > ep.max_datagram:
            return False
        ep.stats["rx"] += 1
        mid = (data[2] << 8) | data[3]
        key = (addr, mid)
        now = self.driver.now()
        seen = ep._dedupe.get(key)
        if seen is not None and seen[0] > now:
            ep.stats["dup"] += 1
            if seen[1] is not None:
                self._send(seen[1], addr)
            return True
        ep._remember(key, now, None, coap.CON)
        frame = data[j:]
        answer = self._routing(frame, addr, partial(self._ack, data, addr, key))
        try:
            out = self.on_frame_nowait(frame, addr, answer)
        except Exception as e:   # a bug, not the device's fault: 5.00
            answer(None, e)
            return True
        if out is not PENDING:
            answer(out, None)
        return True

    def _routing(self, frame, addr, answer):
        """answer for an on_frame_nowait of frame; for an ANNOUNCE one that first records
        addr as the device's route when the reply is a RESULT (BusRoutes' rule)."""
        if len(frame) > 1 and frame[0] & 0x0F == F.ANNOUNCE:
            return partial(self._announced, frame, addr, answer)
        return answer

    def _announced(self, frame, addr, answer, reply, error):
        if error is None:
            self.route_accepted(frame, addr, reply)
        answer(reply, error)

    def _ack(self, data, addr, key, reply, error):
        """Answer a _bus_post datagram: the 2.04 ACK, empty or carrying a reply frame that
        is no ERROR, written here; anything else (an ERROR frame, an error) by _reply on
        the endpoint's request of it. After stop() (a commit that ended after it) there
        is no socket to answer on: nothing."""
        if self.driver is None:
            return
        if error is not None or (reply is not None and (
                len(reply) < 2 or reply[0] & 0x0F == F.ERROR or len(reply) > _MAX_PIGGY)):
            self._reply(self._request_of(data, addr), reply, error)
            return
        tkl = data[0] & 15
        ack = bytes((0x60 | tkl, _ACK_CHANGED, data[2], data[3])) + data[4:4 + tkl]
        if reply is not None:   # Content-Format 65000, the frame
            ack += _CF_SPOT_PAYLOAD + reply
        cache = self.endpoint._dedupe
        seen = cache.get(key)
        if seen is not None:
            cache[key] = (seen[0], ack)
        self._send(ack, addr)

    def _request_of(self, data, addr):
        """The endpoint's Request of a datagram _bus_post took (it reads the same)."""
        ep = self.endpoint
        ep.now = self.driver.now()
        return Request(coap.decode(data, ep.max_datagram, ep.extra_options), addr)

    def _send(self, data, addr):
        driver = self.driver
        if driver is not None and not driver.transport.is_closing():
            self.endpoint.stats["tx"] += 1
            driver.transport.sendto(data, addr)

    def _serve_later(self, req):
        task = asyncio.ensure_future(self._serve(req))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, req):
        try:
            reply = await self.on_bus_frame(req.payload, req.addr)
        except Exception as e:
            self._reply(req, None, e)
        else:
            self._reply(req, reply)

    def _reply(self, req, reply, error=None):
        """Answer req with a reply frame (or None); 5.00 for an error (a bug, not the
        device's fault: nothing acknowledged)."""
        self.endpoint.respond(req, self._response(reply, error))
        self._flush_soon()

    @staticmethod
    def _response(reply, error=None):
        """The Response of a reply frame (or None), 5.00 for an error (logged)."""
        if error is not None:
            log.error("CoAP request to /s", exc_info=error)
            return Response(coap.INTERNAL_SERVER_ERROR)
        return Response(reply_code(reply, coap.CHANGED), reply or b"",
                        None if reply is None else CF_SPOT)

    def _flush_soon(self):
        """Send what respond() queued, once per loop turn for every answer of that turn."""
        if not self._flush_due and self.driver is not None:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self):
        self._flush_due = False
        if self.driver is not None:
            self.driver.poke()

    # ---- requests to devices --------------------------------------------------------

    def _addr(self, device):
        addr = self.devices.get(device) if isinstance(device, str) else device
        if not isinstance(addr, tuple):
            raise ConnectionError("%s has not registered over plain CoAP" % (device,))
        return addr

    def _request(self, device, code, frame, observe=None):
        if self.driver is None:
            raise ConnectionError("CoAP not started")
        try:
            return self.endpoint.request(self._addr(device), code, BUS, frame,
                                         observe=observe, content_format=CF_SPOT)
        except CoapBusy as e:
            raise ConnectionError("too many requests to devices in flight") from e

    async def send_frame(self, device, frame, timeout=10.0):
        """POST frame to a device's /s (a registered id or (host, port)); its reply frame
        (None if it sent none). ConnectionError when it does not answer."""
        token = self._request(device, coap.POST, frame)
        done = self._exchanges[token] = asyncio.get_running_loop().create_future()
        self._flush_soon()
        try:
            ev = await asyncio.wait_for(done, timeout)
        finally:
            self.forget_exchange(token)
        return ev.payload or None

    async def subscribe(self, device, frame, timeout=10.0):
        """A SUBSCRIBE frame as FETCH /s with Observe 0; a FastSubscription."""
        token = self._request(device, coap.FETCH, frame, observe=0)
        sub = self._exchanges[token] = FastSubscription(self, token)
        self._flush_soon()
        try:
            await asyncio.wait_for(sub.first, timeout)
        except BaseException:
            sub.cancel()
            raise
        return sub

    def forget_exchange(self, token):
        """End a command or observation (later notifications get a Reset); False if gone."""
        if self._exchanges.pop(token, None) is None:
            return False
        self.endpoint.cancel(token)
        return True

    def _events(self, events):
        for ev in events:
            item = self._exchanges.get(ev.token)
            if item is None:
                continue
            if isinstance(item, FastSubscription):
                item.take(ev)
            elif not item.done():
                del self._exchanges[ev.token]
                if ev.kind == EV_RESPONSE:
                    item.set_result(ev)
                else:
                    item.set_exception(ConnectionError("no answer (%d)" % ev.kind))
