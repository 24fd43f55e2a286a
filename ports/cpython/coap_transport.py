"""SPOT over CoAP on CPython with asyncio: the bridge side (aiocoap) and device simulators.

    bridge = await BridgeCoapServer(host, port).start()      # /s bus resource on aiocoap
    reply = await bridge.send_frame("hp-1", write_frame)     # POST to the device's /s
    sub = await bridge.subscribe("hp-1", subscribe_frame)    # FETCH /s + Observe
    dev = await serve_device(node, host, port, bridge=(host, bport))  # a simulated device
    dtls = await serve_device_aiocoap(node, host, dtls_port, credentials=...)

serve_device runs core.coap_binding.CoapDevice (the very code a board runs) over one
asyncio DatagramProtocol per device: no threads, so one process holds thousands of
simulated devices. serve_device_aiocoap serves a node through aiocoap instead, which
is how a device speaks DTLS with pre-shared keys (aiocoap's tinydtls server
transport; needs `pip install aiocoap[tinydtls]`, which builds DTLSSocket).
Registration: a device POSTs its ANNOUNCE to the bridge's /s; the bridge records
device id -> address and answers RESULT (spec 9.1). With `oscore=` (aiocoap
credentials holding OSCORE security contexts) the bridge also verifies protected
requests to /s, answers them protected, and sends its own requests to a device
that registered that way protected in the same context.
"""
import asyncio
import inspect

import aiocoap
import aiocoap.resource
from aiocoap.credentials import CredentialsMap
from aiocoap.interfaces import EndpointAddress
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from ...core import frame as F
from ...core.coap import (CoapMessage, CON, OBSERVE, BLOCK1, BLOCK2, SIZE1, SIZE2,
                          BAD_REQUEST)
from ...core.coap_binding import CoapBinding, CoapDevice, CF_SPOT, BUS, coap_code
from ...core.coap_endpoint import Endpoint
from ...core.coap_server import Request
from ...core.errors import MALFORMED, SpotError
from ...core.node import A_ID, A_CONSUMES

__all__ = ["BridgeCoapServer", "BusSubscription", "DeviceServer", "serve_device",
           "serve_device_aiocoap", "dtls_credentials"]


def dtls_credentials(psk_by_identity):
    """aiocoap credentials dict for DTLS PSK: {identity bytes: key bytes} ->
    {':psk-<hex id>': {'dtls': {'psk': {'hex': ..}, 'client-identity': {'hex': ..}}}}."""
    out = {}
    for identity, key in psk_by_identity.items():
        out[":psk-" + identity.hex()] = {"dtls": {"psk": {"hex": key.hex()},
                                                  "client-identity": {"hex": identity.hex()}}}
    return out


def _credentials_map(credentials):
    if credentials is None or isinstance(credentials, CredentialsMap):
        return credentials
    creds = CredentialsMap()
    creds.load_from_dict(credentials)
    return creds


def reply_code(reply, ok_code):
    """The CoAP response code for a bus reply frame: ok_code, or for an ERROR frame the
    code its SPOT error maps to (spec 8; 4.00 for a malformed ERROR frame)."""
    if reply is not None and F.peek(reply) is not None and reply[0] & 0x0F == F.ERROR:
        try:
            return coap_code(F.decode(reply)[3][0])
        except Exception:  # a malformed ERROR frame from a callback: still 4.00
            return BAD_REQUEST
    return ok_code


def _frame_message(reply, ok_code):
    """aiocoap response for a bus reply frame (ERROR frames carry the mapped code)."""
    if reply is None:
        return aiocoap.Message(code=ok_code)
    return aiocoap.Message(code=reply_code(reply, ok_code), payload=reply,
                           content_format=CF_SPOT)


# ---------------------------------------------------------------- bridge side

def _check_announce(frame):
    """RESULT for a well-formed ANNOUNCE with a device id, else an ERROR frame."""
    try:
        _, sid, mid, body = F.decode(frame)
    except SpotError as e:
        detail = "malformed frame" if e.detail is None else str(e.detail)
        return F.error(frame[1], F.message_id(frame) or 0, MALFORMED, detail)
    if not isinstance(body, dict) or not isinstance(body.get(A_ID), str):
        return F.error(sid, mid, MALFORMED, "ANNOUNCE without device id")
    return F.encode(F.RESULT, sid, mid)


class _BusResource(aiocoap.resource.Resource):
    """The bridge's /s: POSTed frames go to the bridge's callback."""

    def __init__(self, bridge):
        super().__init__()
        self.bridge = bridge

    def get_link_description(self):
        return {"rt": "spot.bus", "ct": str(CF_SPOT)}

    async def render_post(self, request):
        cf = request.opt.content_format
        if cf is not None and int(cf) != CF_SPOT:
            return aiocoap.Message(code=aiocoap.UNSUPPORTED_CONTENT_FORMAT)
        if not request.payload:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"no frame")
        reply = await self.bridge.on_bus_frame(request.payload, request.remote)
        return _frame_message(reply, aiocoap.CHANGED)


class BusSubscription:
    """A SUBSCRIBE sent as FETCH /s with Observe: `result` is the RESULT (or ERROR)
    frame; iterate for NOTIFY frames; cancel() ends the observation."""

    def __init__(self, request, result):
        self._request = request
        self.result = result

    def __aiter__(self):
        return self._frames()

    async def _frames(self):
        async for note in self._request.observation:
            yield note.payload

    def cancel(self):
        self._request.observation.cancel()


def _send_on_dtls_sessions(context):
    """Let the bridge's own requests (commands) go down a DTLS session a device opened.

    aiocoap 0.4's tinydtls_server answers requests on a client's session, but its
    recognize_remote() only knows plain-UDP addresses (simplesocketserver._Address, of
    which the session address _AddressDTLS is no subclass), so a request to a device
    that registered over coaps:// finds no transport (NoRequestInterface). Here the
    server's own live sessions are recognised too. A session aiocoap has dropped
    (close_notify, fatal alert) is not: writing to it would make the server's tinydtls
    start a client handshake towards the device; the device re-registers instead.
    For the same reason a close_notify (tinydtls sends it at warning level, which
    aiocoap only logs) drops the session like a fatal alert does."""
    from aiocoap.transports import tinydtls_server as dtls_server

    class SessionAddress(dtls_server._AddressDTLS):
        def _event(self, level, code):
            if level == 1 and code == 0:   # close_notify: the peer is gone from tinydtls
                level = 2
            return super()._event(level, code)

    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if not isinstance(mi, dtls_server.MessageInterfaceTinyDTLSServer):
            continue
        mi._pool._Address = SessionAddress    # this server's sessions only
        plain = mi.recognize_remote

        async def recognize_remote(remote, mi=mi, plain=plain):
            if isinstance(remote, dtls_server._AddressDTLS):
                live = getattr(mi._pool, "_connections", {})
                return live.get(remote._underlying_address.address) is remote
            return await plain(remote)
        mi.recognize_remote = recognize_remote


def _guard_decoding(context, on_unparsable):
    """Datagrams aiocoap cannot decode go to on_unparsable(address, error), not to a
    traceback in the log.

    aiocoap 0.4 catches only its own UnparsableMessage while decoding; a Uri-Path
    that is not UTF-8 raises UnicodeDecodeError out of the socket callback, which
    asyncio logs with a traceback for every such datagram (plain UDP, and the
    plaintext of a DTLS session). Here both receive paths catch what a peer's
    bytes can raise; the datagram is dropped (the peer gets no answer, as for any
    datagram that is not CoAP)."""
    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        for name in ("datagram_msg_received", "_received_datagram"):   # udp6, DTLS plaintext
            receive = getattr(mi, name, None)
            if receive is None:
                continue

            def guarded(*args, receive=receive, name=name):
                try:
                    receive(*args)
                except (UnicodeError, ValueError, TypeError, IndexError) as e:
                    address = args[-1] if name == "datagram_msg_received" else args[0]
                    on_unparsable(address, e)
            setattr(mi, name, guarded)


def _end_dtls_sessions(context):
    """End the DTLS sessions devices opened before aiocoap shuts down: a close_notify
    to each device (it handshakes again at once when it next has something to say)
    and its pending exchanges failed while the message layer still takes errors. The
    socket stops being read first: a device handshaking again meanwhile would open a
    session that only the shutdown fails (seen under load).
    aiocoap 0.4 does the second only after that layer is gone, which logs "Internal
    shutdown sequence mismatch" once per session."""
    from aiocoap.error import LibraryShutdown
    from aiocoap.transports import tinydtls_server as dtls_server
    for ri in context.request_interfaces:
        mi = getattr(getattr(ri, "token_interface", None), "message_interface", None)
        if not isinstance(mi, dtls_server.MessageInterfaceTinyDTLSServer):
            continue
        transport = getattr(mi._pool, "_transport", None)
        if transport is not None:   # no new session between these closes and the shutdown
            transport.pause_reading()
        for session in list(getattr(mi._pool, "_connections", {}).values()):
            try:
                session._dtls_socket.close(session._dtls_session)   # close_notify
            except Exception:   # a session half set up: failing it below is enough
                pass
            session._inject_error(LibraryShutdown("bridge stopping"))


class BusRoutes:
    """What both bridge CoAP servers (this aiocoap one, cloud_bridge.coap_fast) do with a
    frame POSTed to /s: on_frame(frame, remote) answers it (without one, ANNOUNCE frames
    are answered RESULT and the rest kept in `frames`), and an ANNOUNCE answered RESULT
    (only then) records its sender as the device's route in `devices` and the services
    it consumes in `consumes`."""

    decode = staticmethod(F.decode)   # how _route reads an ANNOUNCE (the bridge: faster)

    async def on_bus_frame(self, frame, remote):
        head = F.peek(frame)
        if head is None or head[1] != F.ANNOUNCE:
            if self.on_frame is not None:
                return await self._call(frame, remote)
            if len(self.frames) < self.max_frames:
                self.frames.append((remote, frame))
            return None
        if self.on_frame is not None:
            reply = await self._call(frame, remote)
        else:
            reply = _check_announce(frame)
        self.route_accepted(frame, remote, reply)
        return reply

    def route_accepted(self, frame, remote, reply):
        """An ANNOUNCE frame from remote was answered reply: a RESULT records the route."""
        if reply is not None and F.peek(reply) is not None and reply[0] & 0x0F == F.RESULT:
            self._route(frame, remote)

    async def _call(self, frame, remote):
        out = self.on_frame(frame, remote)
        return await out if inspect.isawaitable(out) else out

    def _route(self, frame, remote):
        """Record an accepted ANNOUNCE's sender as the device's route."""
        try:
            body = self.decode(frame)[3]
        except SpotError:
            return
        if isinstance(body, dict) and isinstance(body.get(A_ID), str):
            self.devices[body[A_ID]] = remote
            consumes = body.get(A_CONSUMES)
            self.consumes[body[A_ID]] = tuple(
                sid for sid in consumes if type(sid) is int) if type(consumes) is list else ()


class BridgeCoapServer(BusRoutes):
    """The bridge's CoAP side: an aiocoap server with the /s bus resource.

    on_frame(frame, remote) -> reply frame or None (may be async) gets every frame
    POSTed to /s; without it ANNOUNCE frames are answered RESULT and the rest is
    kept in `frames`. An ANNOUNCE answered RESULT (and only then) records its
    sender as the device's route: `devices` (device id -> remote), `consumes`
    (device id -> the service ids it consumes, for broadcasts); a refused ANNOUNCE
    changes neither.
    credentials: aiocoap credentials (dict or CredentialsMap) with DTLS PSKs to
    also serve coaps:// on port + 1 (aiocoap's tinydtls_server).
    oscore: aiocoap credentials (dict or CredentialsMap) with OSCORE security
    contexts: protected requests to /s are verified with them (the remote is then
    an aiocoap OSCOREAddress naming the context) and answered protected; frames
    sent to such a remote go out protected. It is read on every request, so
    contexts added to a CredentialsMap later are used from then on.
    on_unparsable(address, error): told about each datagram aiocoap cannot decode
    (dropped; default: counted in `unparsable`, never logged).
    plain=False: no coap:// socket (only coaps://; OSCORE needs one, so then it stays).
    """

    def __init__(self, host="127.0.0.1", port=5683, on_frame=None, credentials=None,
                 max_frames=1000, oscore=None, on_unparsable=None, plain=True):
        self.plain = plain     # False: no coap:// here (cloud_bridge.coap_fast serves it)
        self.host = host
        self.port = port
        self.on_frame = on_frame
        self.credentials = _credentials_map(credentials)
        self.oscore = _credentials_map(oscore)
        self.devices = {}      # device id -> aiocoap remote
        self.consumes = {}     # device id -> tuple of service ids it consumes
        self.frames = []       # (remote, frame) received without a callback
        self.max_frames = max_frames
        self.context = None
        self.unparsable = 0
        self.on_unparsable = on_unparsable

    async def start(self):
        site = aiocoap.resource.Site()
        site.add_resource([BUS], _BusResource(self))
        site.add_resource([".well-known", "core"],
                          aiocoap.resource.WKCResource(site.get_resources_as_linkheader))
        transports = ["udp6"] if self.plain or self.oscore is not None else []
        if self.oscore is not None:
            # the OSCORE request interface first: it takes requests to OSCOREAddress remotes
            transports.insert(0, "oscore")
            site = OscoreSiteWrapper(site, self.oscore)
        if self.credentials is not None:
            transports.append("tinydtls_server")
        self.context = await aiocoap.Context.create_server_context(
            site, bind=(self.host, self.port), transports=transports,
            server_credentials=self.credentials)
        if self.credentials is not None:
            _send_on_dtls_sessions(self.context)
        _guard_decoding(self.context, self._unparsable)
        return self

    def _unparsable(self, address, error):
        self.unparsable += 1
        if self.on_unparsable is not None:
            self.on_unparsable(address, error)

    async def stop(self):
        if self.context is not None:
            if self.credentials is not None:
                _end_dtls_sessions(self.context)
            await self.context.shutdown()
            self.context = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def _target(self, msg, device):
        if isinstance(device, str) and device in self.devices:
            device = self.devices[device]
        if isinstance(device, EndpointAddress):   # before tuple: OSCOREAddress is one
            msg.remote = device
            msg.opt.uri_path = (BUS,)
        elif isinstance(device, str):
            msg.set_request_uri(device.rstrip("/") + "/" + BUS)
        elif isinstance(device, tuple):
            msg.set_request_uri("coap://%s:%d/%s" % (device[0], device[1], BUS))
        else:
            raise TypeError("device must be a registered id, a remote, (host, port) or a URI")
        return msg

    async def send_frame(self, device, frame, timeout=10.0):
        """POST frame to a device's /s; its reply frame (None if it sent none).

        device: a registered device id, an aiocoap remote, (host, port) or a URI."""
        msg = self._target(aiocoap.Message(code=aiocoap.POST, payload=frame,
                                           content_format=CF_SPOT), device)
        resp = await asyncio.wait_for(self.context.request(msg).response, timeout)
        return resp.payload or None

    async def subscribe(self, device, frame, timeout=10.0):
        """Send a SUBSCRIBE frame as FETCH /s with Observe; a BusSubscription."""
        msg = self._target(aiocoap.Message(code=aiocoap.FETCH, payload=frame, observe=0,
                                           content_format=CF_SPOT), device)
        request = self.context.request(msg)
        first = await asyncio.wait_for(request.response, timeout)
        return BusSubscription(request, first.payload)


# ---------------------------------------------------------------- device side

class DeviceServer(asyncio.DatagramProtocol):
    """One CoapDevice on one UDP socket, driven by the asyncio loop's clock and timers."""

    def __init__(self, device):
        self.device = device
        self.transport = None
        self.loop = None
        self.errors = 0
        self.last_error = None
        self.socket_errors = 0
        self._timer = None
        self._due = None

    @property
    def port(self):
        return self.transport.get_extra_info("sockname")[1]

    @property
    def node(self):
        return self.device.node

    def now(self):
        return int(self.loop.time() * 1000)

    def connection_made(self, transport):
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self._run(self.device.step)

    def datagram_received(self, data, addr):
        self._run(self.device.receive, data, addr)

    def error_received(self, exc):
        self.socket_errors += 1

    def connection_lost(self, exc):
        self._cancel()

    def poke(self):
        """Run the device now (after firmware changed node values)."""
        self._run(self.device.step)

    def close(self):
        self._cancel()
        if self.transport is not None:
            self.transport.close()

    def _run(self, fn, *args):
        try:
            out = fn(*args, self.now())
        except Exception as e:  # keep serving; counted and kept for inspection
            self.errors += 1
            self.last_error = e
            out = ()
        if self.transport is None or self.transport.is_closing():
            return
        for addr, data in out:
            self.transport.sendto(data, addr)
        self._schedule()

    def _schedule(self):
        now = self.now()
        wait = self.device.next_timeout(now)
        due = None if wait is None else now + wait
        if due == self._due and self._timer is not None:
            return   # the timer already set is right: most datagrams change nothing
        self._cancel()
        if due is not None:
            self._due = due
            self._timer = self.loop.call_later(wait / 1000.0, self._tick)

    def _tick(self):
        self._timer = None
        self._due = None
        self._run(self.device.step)

    def _cancel(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._due = None


async def serve_device(node, host="127.0.0.1", port=0, bridge=None, oscore=None,
                       bridge_kid=None, lifetime=300, node_clock=None, **endpoint_options):
    """Serve node over CoAP (core.coap_binding.CoapDevice) on host:port; a DeviceServer.

    bridge: (host, port) of the bridge's CoAP endpoint to register with.
    oscore: a core.coap_oscore.OscoreServer (bridge_kid: its context for the bridge).
    node_clock: the node's time in seconds from the endpoint's milliseconds.
    endpoint_options: passed to core.coap_endpoint.Endpoint.
    """
    device = CoapDevice(node, Endpoint(**endpoint_options), bridge_addr=bridge, oscore=oscore,
                        bridge_kid=bridge_kid, lifetime=lifetime, node_clock=node_clock)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(lambda: DeviceServer(device),
                                                   local_addr=(host, port))
    return proto


class _DeviceSite(aiocoap.resource.Resource):
    """A node's CoAP mapping served by aiocoap (every path): requests go through the
    same CoapBinding; the peer is the DTLS PSK identity, else the address."""

    def __init__(self, binding, credentials, loop):
        super().__init__()
        self.binding = binding
        self.credentials = credentials
        self.loop = loop

    async def needs_blockwise_assembly(self, request):
        return True

    def _peer(self, remote):
        for claim in getattr(remote, "authenticated_claims", None) or ():
            item = self.credentials.get(claim) if self.credentials is not None else None
            identity = getattr(item, "client_identity", None)
            if identity is not None:
                return identity
        return remote.hostinfo

    async def render(self, request):
        skip = (OBSERVE, BLOCK1, BLOCK2, SIZE1, SIZE2)   # aiocoap did blocks; no Observe here
        options = [(int(o.number), o.encode()) for o in request.opt.option_list()
                   if int(o.number) not in skip]
        msg = CoapMessage(CON, int(request.code), 0, request.token or b"", options,
                          request.payload)
        peer = self._peer(request.remote)
        self.binding.now = int(self.loop.time())
        resp = self.binding.handle(Request(msg, peer), peer)
        out = aiocoap.Message(code=resp.code, payload=resp.payload or b"")
        if resp.content_format is not None:
            out.opt.content_format = resp.content_format
        return out


class AiocoapDevice:
    """A node served through aiocoap; close() with await."""

    def __init__(self, node, binding, context, task):
        self.node = node
        self.binding = binding
        self.context = context
        self._task = task

    async def close(self):
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        await self.context.shutdown()


async def serve_device_aiocoap(node, host="127.0.0.1", port=5684, credentials=None):
    """Serve node's CoAP mapping through aiocoap on host:port; an AiocoapDevice.

    With credentials (aiocoap credentials dict or CredentialsMap holding DTLS PSKs,
    see dtls_credentials()) port is coaps:// over aiocoap's tinydtls server
    transport, and the node sees each PSK identity (bytes) as the peer; without,
    plain coap://. Observe is not offered on this path (aiocoap has no hook for
    the node's subscriptions); the node's plans and timers still run.
    """
    loop = asyncio.get_running_loop()
    creds = _credentials_map(credentials)
    binding = CoapBinding(node)
    site = _DeviceSite(binding, creds, loop)
    if creds is not None:
        # aiocoap's DTLS server binds one above the port it is given
        context = await aiocoap.Context.create_server_context(
            site, bind=(host, port - 1), transports=["tinydtls_server"],
            server_credentials=creds)
    else:
        context = await aiocoap.Context.create_server_context(
            site, bind=(host, port), transports=["udp6"])

    async def ticker():
        while True:
            now = int(loop.time())
            node.step(now)
            wait = node.next_deadline(now)
            await asyncio.sleep(1.0 if wait is None else min(max(wait, 0.05), 60.0))

    return AiocoapDevice(node, binding, context, asyncio.create_task(ticker()))
