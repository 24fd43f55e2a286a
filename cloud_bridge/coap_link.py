"""The bridge's CoAP side: devices register and send telemetry to /s, and the
bridge sends them commands there.

Two servers, one wire: plain coap:// on the configured port is served by SPOT's
own endpoint (cloud_bridge.coap_fast) unless the bridge has an OSCORE keyring
(OSCORE runs on that port, so aiocoap serves it then) or `coap_fast = false`;
coaps:// (DTLS, the next port) and OSCORE by aiocoap
(ports/cpython/coap_transport). A device's commands go back through the server
it registered through.

A device is known by the address its accepted ANNOUNCE came from; telemetry
from an address that has not announced is refused (ERROR not-authorised, CoAP
4.01), so the device registers again and resends: nothing is acknowledged that
was not stored. A refused ANNOUNCE is answered with an ERROR and moves nothing.

With a keyring (cloud_bridge.pairing.Keyring) the link also speaks OSCORE: a
commissioned device's ANNOUNCE and telemetry are verified with its provisioning
context and answered in it, commands go back protected in the same context, and
a commissioned device id is accepted only from its own context (never in the
clear, never from another device's context). Devices that are not commissioned
keep working in the clear.

Every ANNOUNCE is registered under the identity that sent it (the DTLS PSK
identity, the OSCORE context, or for plain CoAP its source IP when the
[registration] plain policy lets plain CoAP register at all), so an id held by
one identity is refused (4.01, nothing moves) when another claims it
(cloud_bridge.registration). Telemetry the store cannot take is answered
ERROR busy (5.03), never 2.04.

A SUBSCRIBE goes out as an observation (FETCH /s, Observe 0, spec 9.1); its
notifications are handed to the bridge like telemetry (stored, shown) until
the device ends the observation, which ends the subscription in the bridge's
book too.
"""
import asyncio
import logging
from functools import partial

from aiocoap.error import NetworkError

from ..core import frame as F
from ..core.errors import BUSY, MALFORMED, NOT_AUTHORISED, SpotError
from ..core.node import A_ID
from ..ports.cpython.coap_transport import BridgeCoapServer
from .coap_fast import PENDING, FastBusServer
from .frame_decode import decode as decode_frame
from .ingest import settle
from . import service
from .registration import Refused, source_ip
from .store import StoreError
from .tasks import cancel_and_wait

log = logging.getLogger("spot.bridge.coap")

BROADCAST_CONCURRENCY = 64   # informational frames in flight at once during a broadcast


def _refuse(frame, code, text):
    mid = F.message_id(frame)
    return None if mid is None else F.error(frame[1], mid, code, text)


def _sockaddr(remote):
    """(host, port, ...) of a request's sender: the fast path's remote, or aiocoap's."""
    return remote if type(remote) is tuple else getattr(remote, "sockaddr", None) or ("",)


def _where(remote):
    """The key a device in the clear is known by: its address (per server kind)."""
    return remote if type(remote) is tuple else remote.uri_base


def _announced_id(frame):
    """(the device id an ANNOUNCE claims or None when it names none, the frame decoded
    or None when it does not decode)."""
    try:
        # the bridge's own limit: no padding around it; core's reading, cbor2's speed
        decoded = decode_frame(frame, max_size=65536)
    except SpotError:
        return None, None
    body = decoded[3]
    device = body.get(A_ID) if isinstance(body, dict) else None
    return (device if isinstance(device, str) else None), decoded


class CoapLink:
    name = "coap"

    def __init__(self, bridge, host, port, credentials=None, keyring=None, fast=True):
        self.bridge = bridge
        self.keyring = keyring
        self.fast = None     # plain coap:// on SPOT's endpoint
        self.server = None   # aiocoap: coaps://, OSCORE (and coap:// without the fast path)
        if fast and keyring is None:
            self.fast = FastBusServer(host, port, on_frame=self._frame,
                                      on_frame_nowait=self.frame_nowait,
                                      on_unparsable=self._unparsable)
        if self.fast is None or credentials is not None:
            self.server = BridgeCoapServer(
                host, port, on_frame=self._frame, credentials=credentials,
                oscore=None if keyring is None else keyring.credentials,
                on_unparsable=self._unparsable, plain=self.fast is None)
        self.servers = [s for s in (self.fast, self.server) if s is not None]
        self._last_announce = (None, None)   # (frame, decoded) of the last one answered
        for server in self.servers:   # routes read from ANNOUNCEs: decoded once (_decode)
            server.decode = self._decode
        self.by_address = {}   # remote address (_where) -> device id (devices in the clear)
        self.address_of = {}   # device id -> its address in by_address
        self.observations = {}   # (device, sid, subscription id) -> (BusSubscription, task)
        bridge.add_transport(self.name, self)

    def _unparsable(self, address, error):
        host = str(source_ip(address[0]) or address[0]) if isinstance(address, tuple) \
            else getattr(address, "hostinfo", "?")
        self.bridge.peers.report("coap_unparsable", host, type(error).__name__)

    async def start(self):
        for server in self.servers:
            await server.start()
        return self

    async def stop(self):
        await cancel_and_wait([task for _, task in self.observations.values()])
        for server in self.servers:
            await server.stop()

    @property
    def port(self):
        """The coap:// port (coaps:// is the next one)."""
        return self.servers[0].port

    def route(self, device):
        """The remote a registered device's commands go to (None: not registered)."""
        server = self._server_of(device)
        return None if server is None else server.devices[device]

    def _server_of(self, device):
        """The server a registered device's route is in, else None."""
        for server in self.servers:
            if device in server.devices:
                return server
        return None

    def _context_owner(self, remote):
        """The commissioned device whose OSCORE context protected the request, or None."""
        sc = getattr(remote, "security_context", None)
        if sc is None or self.keyring is None:
            return None
        return self.keyring.device_of(sc)

    def _commissioned(self, device):
        return self.keyring is not None and device is not None and self.keyring.has(device)

    def _wrong_credentials(self, frame):
        self.bridge.metrics.inc("frames_rejected", reason="wrong_credentials")
        return _refuse(frame, NOT_AUTHORISED, "credentials of another device")

    async def _frame(self, frame, remote):
        fut = asyncio.get_running_loop().create_future()
        out = self.frame_nowait(frame, remote, partial(settle, fut))
        return await fut if out is PENDING else out

    def frame_nowait(self, frame, remote, answer):
        """_frame without a coroutine (coap_fast answers a burst of NOTIFYs and ANNOUNCEs
        this way): the reply now; or PENDING, and answer(reply, None) comes once the
        bridge stored the frame's rows or its registration (or did not: BUSY),
        answer(None, error) if it failed."""
        head = F.peek(frame)
        if head is not None and head[1] == F.ANNOUNCE:
            return self._announce(frame, remote, self._context_owner(remote),
                                  getattr(remote, "security_context", None) is not None,
                                  answer)
        if getattr(remote, "security_context", None) is not None:
            # known by its context; it must have announced in it since the link started
            owner = self._context_owner(remote)
            route = self.server.devices.get(owner)
            device = owner if owner is not None and self._context_owner(route) == owner else None
        else:
            device = self.by_address.get(_where(remote))
            if self._commissioned(device):   # commissioned since it registered in the clear
                return self._wrong_credentials(frame)
        if device is None:
            self.bridge.metrics.inc("frames_rejected", reason="unknown_device")
            return _refuse(frame, NOT_AUTHORISED, "announce first")
        try:
            out = self.bridge.device_frame_nowait(self.name, device, frame,
                                                  partial(self._stored, frame, answer))
        except StoreError:
            return self._not_stored(frame)
        return PENDING if out is service.PENDING else out

    def _stored(self, frame, answer, reply, error):
        """frame_nowait's answer once the bridge stored its rows or did not (BUSY)."""
        if isinstance(error, StoreError):
            answer(self._not_stored(frame), None)
        else:
            answer(reply, error)

    def _not_stored(self, frame):
        """Not stored: not acknowledged (counted, logged by the bridge)."""
        self.bridge.metrics.inc("telemetry_not_stored", transport=self.name)
        return _refuse(frame, BUSY, "not stored, retry later")

    def _dtls_identity(self, remote):
        """The PSK identity of a coaps:// request, else None."""
        creds = self.server.credentials if self.server is not None else None
        for claim in getattr(remote, "authenticated_claims", None) or ():
            item = creds.get(claim) if creds is not None else None
            identity = getattr(item, "client_identity", None)
            if identity:
                return identity.decode("utf-8", "backslashreplace")
        return None

    def _identity(self, remote, owner, protected):
        """What an ANNOUNCE from remote registers under (Refused by the plain policy)."""
        if protected:
            return "oscore:%s" % owner
        dtls = self._dtls_identity(remote)
        if dtls is not None:
            return "dtls:" + dtls
        return self.bridge.admission.identity_for_plain(_sockaddr(remote)[0])

    def _announce(self, frame, remote, owner, protected, answer):
        """An ANNOUNCE to register: the refusal now, or PENDING and answer(reply, error)
        once the bridge registered it (or refused it)."""
        claimed, decoded = _announced_id(frame)
        if claimed is not None and (protected or self._commissioned(claimed)) \
                and claimed != owner:
            return self._wrong_credentials(frame)
        source = _where(remote)
        if type(source) is tuple:   # as aiocoap names it, for the logs and the rate limits
            source = "coap://%s:%d" % (("[%s]" if ":" in source[0] else "%s") % source[0],
                                       source[1])
        try:
            identity = self._identity(remote, owner, protected)
        except Refused as e:
            self.bridge.peers.report(e.reason, str(source_ip(_sockaddr(remote)[0]) or source),
                                     e.text)
            return _refuse(frame, e.code, e.text)
        out = self.bridge.device_frame_nowait(
            self.name, owner, frame, partial(self._announced, frame, decoded, claimed, remote,
                                             protected, answer),
            decoded, identity, source)
        if out is service.PENDING:
            return PENDING
        return self._accepted(frame, decoded, claimed, remote, protected, out)

    def _announced(self, frame, decoded, claimed, remote, protected, answer, reply, error):
        if error is not None:
            answer(None, error)
        else:
            answer(self._accepted(frame, decoded, claimed, remote, protected, reply), None)

    def _accepted(self, frame, decoded, claimed, remote, protected, reply):
        """The bridge's reply to an ANNOUNCE: a RESULT makes remote the device's route."""
        if reply is None:   # the bridge refused it (malformed, invalid)
            return _refuse(frame, MALFORMED, "announce refused")
        if reply[0] & 0x0F == F.RESULT and claimed is not None:
            self._remember(claimed, None if protected else _where(remote))
            for server in self.servers:   # its route is recorded in the one it came through
                if (server is self.fast) != (type(remote) is tuple):
                    server.devices.pop(claimed, None)
                    server.consumes.pop(claimed, None)
            self._last_announce = (frame, decoded)
        return reply

    def _decode(self, frame):
        """decode_frame for the servers' route of an accepted ANNOUNCE: the frame that
        _announce answered last was decoded there already (the server reads its route
        right after, in the same step), any other frame is decoded now."""
        last, decoded = self._last_announce
        self._last_announce = (None, None)
        return decoded if frame is last else decode_frame(frame)

    def _remember(self, device, where):
        """The device's address for frames in the clear (None: it speaks OSCORE now)."""
        old = self.address_of.pop(device, None)
        if old is not None:
            self.by_address.pop(old, None)
        if where is not None:
            previous = self.by_address.get(where)
            if previous is not None:
                self.address_of.pop(previous, None)
            self.by_address[where] = device
            self.address_of[device] = where

    def forget(self, device):
        """Drop the device's route (it was deleted): it must register again."""
        self._remember(device, None)
        for server in self.servers:
            server.devices.pop(device, None)
            server.consumes.pop(device, None)

    async def request(self, device, frame, timeout):
        server = self._server_of(device)
        if server is None:
            raise ConnectionError("%s has not registered over CoAP" % device)
        try:
            if frame[0] & 0x0F == F.SUBSCRIBE:
                return await self._subscribe(server, device, frame, timeout)
            return await server.send_frame(device, frame, timeout)
        except NetworkError as e:   # e.g. its DTLS session is closed: no way to it now
            raise ConnectionError("%s unreachable: %s" % (device, e)) from e

    async def _subscribe(self, server, device, frame, timeout):
        """SUBSCRIBE as an observation; its notifications go on to the bridge."""
        sub = await server.subscribe(device, frame, timeout)
        if not sub.result or sub.result[0] & 0x0F != F.RESULT:
            sub.cancel()
            return sub.result or None
        key = (device, frame[1], F.message_id(frame))
        old = self.observations.pop(key, None)
        if old is not None:
            old[1].cancel()
        self.observations[key] = (sub, asyncio.ensure_future(self._notifications(key, sub)))
        return sub.result

    async def _notifications(self, key, sub):
        device, sid, mid = key
        frames = asyncio.Queue()   # taken at once: aiocoap keeps one notification only

        async def take():
            try:
                async for note in sub:
                    frames.put_nowait(note)
            except Exception as e:   # the observation failed (device gone, error notification)
                log.info("subscription %d of %s on service %d ended: %s", mid, device, sid, e)
            finally:
                frames.put_nowait(None)
        taking = asyncio.ensure_future(take())
        try:
            while True:
                note = await frames.get()
                if note is None:
                    break
                await self.bridge.device_frame(self.name, device, note)
        finally:
            taking.cancel()
            sub.cancel()
            if self.observations.get(key, (None, None))[1] is asyncio.current_task():
                del self.observations[key]
                self.bridge.subscription_ended(device, sid, mid)

    async def broadcast(self, service, frame):
        """POST frame to every registered device consuming service, at most
        BROADCAST_CONCURRENCY at a time; a device that fails is counted, not retried."""
        slots = asyncio.Semaphore(BROADCAST_CONCURRENCY)

        async def one(server, device):
            async with slots:
                try:
                    await server.send_frame(device, frame, timeout=5)
                except Exception:
                    self.bridge.metrics.inc("broadcast_failures", transport=self.name)
        await asyncio.gather(*[one(server, device) for server in self.servers
                               for device, sids in list(server.consumes.items())
                               if service in sids and device in server.devices])
