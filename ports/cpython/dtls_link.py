"""A simulated device's coaps:// link to the bridge: one DTLS-PSK session (tinydtls
through DTLSSocket) on the device's own UDP socket.

    link = await connect_device_dtls(node, "bridge", 5684, b"sim", key, node_clock=clock)
    link.device.send_telemetry(frames); link.poke()
    link.close()

The device is core.coap_binding.CoapDevice, the code a board runs: every datagram
it sends to the bridge (ANNOUNCE, telemetry, answers to the bridge's commands) is
written into the session, and every record the bridge sends back is decrypted and
handed to CoapDevice.receive, so the bridge's own requests (POST /s, FETCH+Observe),
which it sends down the session the device opened, reach the node.

Failures never hang and never spin: a handshake that gets no answer within
handshake_timeout (a wrong key: the bridge drops the Finished it cannot verify) or
ends in a fatal alert (an unknown identity) is abandoned, reported in last_error
(logged once per run of failures) and tried again after a back-off doubling up to
max_backoff. A session is taken as lost on a fatal alert or close_notify, on an ICMP
error, or when a confirmable message got no record back for `silence` seconds (a
restarted bridge silently drops records of a session it no longer knows); the link
then handshakes again after the back-off and has the device register at once, so
the bridge learns the new session. While there is no session, up to max_queue
datagrams wait (the oldest are dropped); CoAP retransmits the rest.
"""
import asyncio
import logging
import random

from ...core.coap_binding import CoapDevice
from ...core.coap_endpoint import Endpoint

__all__ = ["DtlsBridgeLink", "connect_device_dtls", "parse_psk", "dtls_available"]

log = logging.getLogger("spot.sim.dtls")

# tinydtls events (level 0) and alert levels (RFC 6347 / RFC 5246)
EVENT_CONNECTED = 0x1DE
LEVEL_FATAL = 2
ALERT_CLOSE_NOTIFY = 0
ALERT_NAMES = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
               40: "handshake_failure", 47: "illegal_parameter", 50: "decode_error",
               51: "decrypt_error", 80: "internal_error (unknown PSK identity?)",
               115: "unknown_psk_identity"}

# tinydtls keeps one peer per session address; each link has its own DTLS context with
# exactly one session, so this address only names it and is never used for I/O
SESSION_ADDR = ("::1", 5684)

IDLE, HANDSHAKE, CONNECTED = "idle", "handshake", "connected"
HANDSHAKE_POLL = 0.5    # seconds between tinydtls retransmission checks while handshaking


def dtls_available():
    """None when DTLSSocket (tinydtls) imports, else why it does not."""
    try:
        from DTLSSocket import dtls  # noqa: F401
    except ImportError as e:
        return ("DTLS needs DTLSSocket: pip install 'spot-runtime[dtls]' (it builds tinydtls:"
                " autoconf, automake, libtool) (%s)" % e)
    return None


def parse_psk(text):
    """(identity bytes, key bytes) from "IDENTITY:HEXKEY" (the bridge's [dtls] psk
    table holds the same pair); ValueError saying what is wrong."""
    identity, sep, key = (text or "").rpartition(":")
    if not sep or not identity or not key:
        raise ValueError("expected --psk IDENTITY:HEXKEY, got %r" % text)
    try:
        secret = bytes.fromhex(key)
    except ValueError:
        raise ValueError("PSK key must be hex digits, got %r" % key) from None
    if not secret:
        raise ValueError("PSK key is empty")
    return identity.encode("utf-8"), secret


def _is_con(datagram):
    """A CoAP confirmable message (the bridge always answers one)."""
    return len(datagram) >= 4 and datagram[0] >> 6 == 1 and (datagram[0] >> 4) & 3 == 0


class DtlsBridgeLink(asyncio.DatagramProtocol):
    """One CoapDevice talking to the bridge through one DTLS-PSK client session on a
    UDP socket connected to the bridge's coaps:// port.

    stats: handshakes (sessions made), failures (handshakes abandoned), lost (sessions
    lost), tx / rx (datagrams on the wire), dropped (plaintext lost to a full queue).
    """

    def __init__(self, device, peer, identity, key, handshake_timeout=10.0, silence=30.0,
                 first_backoff=1.0, max_backoff=60.0, max_queue=8, name=None):
        self.device = device
        self.peer = peer              # the CoapDevice's bridge address
        self.identity = identity
        self.key = key
        self.handshake_timeout = handshake_timeout
        self.silence = silence
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.max_queue = max_queue
        self.name = name or "device"
        self.state = IDLE
        self.last_error = None
        self.errors = 0               # exceptions from the device (kept serving)
        self.stats = {"handshakes": 0, "failures": 0, "lost": 0, "tx": 0, "rx": 0,
                      "dropped": 0}
        self.transport = None
        self.loop = None
        self.connected = asyncio.Event()
        self._dtls = None
        self._session = None
        self._queue = []              # plaintext waiting for a session
        self._plain = []              # plaintext decrypted during handleMessage
        self._alerts = []             # (level, code) seen during a tinydtls call
        self._backoff = first_backoff
        self._retry_at = None         # loop time of the next handshake attempt
        self._deadline = None         # loop time a running handshake is abandoned
        self._unanswered = None       # loop time of the first CON not answered yet
        self._reported = False        # this run of failures was logged
        self._timer = None
        self._due = None
        self._closed = False

    # ---- asyncio protocol ------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self._run(self.device.step)

    def datagram_received(self, data, addr):
        self.stats["rx"] += 1
        if self._session is None:
            return    # no handshake running: a late record of an abandoned session
        self._tinydtls(self._dtls.handleMessage, self._session, data)
        self._after_tinydtls()

    def error_received(self, exc):
        # ICMP on the connected socket: nothing listens there (any more)
        if self.state != IDLE:
            self._drop("%s:%s unreachable (%s)" % (self.peer[0], self.peer[1], exc))
            self._schedule()

    def connection_lost(self, exc):
        self._cancel()

    # ---- public ----------------------------------------------------------------------------

    @property
    def node(self):
        return self.device.node

    def now(self):
        return int(self.loop.time() * 1000)

    def poke(self):
        """Run the device now (after the simulator changed node values or queued telemetry)."""
        self._run(self.device.step)

    def close(self):
        """Say close_notify to the bridge (so it forgets the session) and stop."""
        self._closed = True
        self._cancel()
        if self._session is not None and self.transport is not None \
                and not self.transport.is_closing():
            try:
                self._dtls.close(self._session)
            except Exception:   # the session may already be gone inside tinydtls
                pass
        self._forget_session()
        self._dtls = None     # its callbacks point back here: no cycle left behind
        if self.transport is not None:
            self.transport.close()

    # ---- device side -----------------------------------------------------------------------

    def _run(self, fn, *args):
        try:
            out = fn(*args, self.now())
        except Exception as e:  # keep serving; counted and kept for inspection
            self.errors += 1
            self.last_error = "device: %r" % (e,)
            out = ()
        for _, data in out:     # the socket reaches only the bridge
            self._send_plain(data)
        self._schedule()

    def _send_plain(self, data):
        if self._closed:
            return
        if self.state == CONNECTED:
            self._write(data)
            return
        if len(self._queue) >= self.max_queue:
            self._queue.pop(0)
            self.stats["dropped"] += 1
        self._queue.append(bytes(data))
        if self.state == IDLE and self._retry_at is None:
            self._handshake()

    def _write(self, data):
        if _is_con(data) and self._unanswered is None:
            self._unanswered = self.loop.time()
        written = self._tinydtls(self._dtls.write, self._session, bytes(data))
        if written is None or written < 0:   # tinydtls no longer has the session
            self._drop("cannot write to the session")

    # ---- tinydtls --------------------------------------------------------------------------

    def _on_read(self, sender, data):
        self._plain.append(bytes(data))
        return len(data)

    def _on_write(self, recipient, data):
        if self.transport is None or self.transport.is_closing():
            return len(data)
        self.transport.sendto(bytes(data))
        self.stats["tx"] += 1
        return len(data)

    def _on_event(self, level, code):
        self._alerts.append((level, code))
        return 0

    def _tinydtls(self, fn, *args):
        """Call into tinydtls; its callbacks only collect, acted on afterwards (no
        re-entry into tinydtls from inside its own callbacks)."""
        try:
            return fn(*args)
        except Exception as e:   # DTLSSocket raises on what it cannot do
            log.debug("%s: tinydtls %s: %r", self.name, getattr(fn, "__name__", fn), e)
            return None

    def _after_tinydtls(self):
        alerts, self._alerts = self._alerts, []
        plain, self._plain = self._plain, []
        for level, code in alerts:
            if level == 0 and code == EVENT_CONNECTED and self.state == HANDSHAKE:
                self._connected()
            elif level == LEVEL_FATAL or (level > 0 and code == ALERT_CLOSE_NOTIFY):
                # tinydtls sends close_notify at warning level and forgets the peer
                # all the same: the session is gone either way
                what = "closed by the bridge" if code == ALERT_CLOSE_NOTIFY else \
                    "fatal alert %s" % ALERT_NAMES.get(code, code)
                self._drop(what)
                break
        if plain:
            self._unanswered = None
            for data in plain:
                self._run(self.device.receive, data, self.peer)
        self._schedule()

    def _handshake(self):
        from DTLSSocket import dtls
        if self._dtls is None:
            psk = {self.identity: self.key}
            self._dtls = dtls.DTLS(read=self._on_read, write=self._on_write,
                                   event=self._on_event, pskId=self.identity, pskStore=psk)
        self.state = HANDSHAKE
        self._retry_at = None
        self._deadline = self.loop.time() + self.handshake_timeout
        self._session = self._tinydtls(self._dtls.connect, *SESSION_ADDR)
        if self._session is None:
            self._drop("cannot start a handshake")
        else:
            self._after_tinydtls()

    def _connected(self):
        first = self.stats["handshakes"] == 0
        self.state = CONNECTED
        self.stats["handshakes"] += 1
        self._deadline = None
        self._backoff = self.first_backoff
        if self._reported:
            log.warning("%s: DTLS session with %s:%s up again", self.name, *self.peer)
        self._reported = False
        self.last_error = None
        self.connected.set()
        queue, self._queue = self._queue, []
        if not first:
            self.device.register_now()   # the bridge must learn the new session
        for data in queue:
            if self.state != CONNECTED:   # a write lost the session: the rest waits again
                break
            self._write(data)
        self._run(self.device.step)

    def _drop(self, why):
        """Abandon the handshake or session; the next attempt after the back-off."""
        was = self.state
        if was == CONNECTED:
            self.stats["lost"] += 1
            text = "DTLS session with %s:%s lost: %s" % (self.peer[0], self.peer[1], why)
        else:
            self.stats["failures"] += 1
            text = "DTLS handshake with %s:%s failed: %s" % (self.peer[0], self.peer[1], why)
        self.last_error = text
        if not self._reported:
            log.warning("%s: %s (retrying with back-off up to %.0f s)", self.name, text,
                        self.max_backoff)
            self._reported = True
        if self._session is not None:
            try:
                self._dtls.resetPeer(self._session)
            except Exception:
                pass
        self._forget_session()
        self.state = IDLE
        self._deadline = None
        self._unanswered = None
        self.connected.clear()
        wait = self._backoff * random.uniform(0.8, 1.2)   # a fleet does not retry in step
        self._retry_at = self.loop.time() + wait
        self._backoff = min(self._backoff * 2, self.max_backoff)

    def _forget_session(self):
        self._session = None
        self._alerts = []
        self._plain = []

    # ---- timers ----------------------------------------------------------------------------

    def _wake_at(self):
        """Loop time of the earliest thing to do: device, handshake, retry, silence."""
        times = []
        wait = self.device.next_timeout(self.now())
        if wait is not None:
            times.append(self.loop.time() + wait / 1000.0)
        if self.state == HANDSHAKE:
            times.append(min(self._deadline, self.loop.time() + HANDSHAKE_POLL))
        elif self.state == IDLE and self._retry_at is not None:
            times.append(self._retry_at)
        if self.state == CONNECTED and self._unanswered is not None:
            times.append(self._unanswered + self.silence)
        return min(times) if times else None

    def _schedule(self):
        if self._closed or self.transport is None or self.transport.is_closing():
            return
        due = self._wake_at()
        if due is not None and due == self._due and self._timer is not None:
            return
        self._cancel()
        if due is not None:
            self._due = due
            self._timer = self.loop.call_at(due, self._tick)

    def _tick(self):
        self._timer = None
        self._due = None
        now = self.loop.time()
        if self.state == HANDSHAKE:
            if now >= self._deadline:
                self._drop("no answer in %.0f s (wrong PSK, or no coaps:// server there)"
                           % self.handshake_timeout)
            else:
                self._tinydtls(self._dtls.checkRetransmit)   # resends a lost flight
                self._after_tinydtls()
        elif self.state == CONNECTED and self._unanswered is not None \
                and now >= self._unanswered + self.silence:
            self._drop("no record from the bridge in %.0f s" % self.silence)
        if self.state == IDLE and self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._handshake()
        self._run(self.device.step)

    def _cancel(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._due = None


async def connect_device_dtls(node, host, port, identity, key, lifetime=300, node_clock=None,
                              local=None, name=None, link_options=None, **endpoint_options):
    """A DtlsBridgeLink registering node with the bridge's coaps://host:port.

    identity, key: the PSK (bytes) the bridge has in its [dtls] psk table.
    local: (host, port) to bind (default: any); link_options: DtlsBridgeLink's
    timeouts; endpoint_options: core.coap_endpoint.Endpoint's.
    """
    peer = (host, port)
    device = CoapDevice(node, Endpoint(**endpoint_options), bridge_addr=peer, lifetime=lifetime,
                        node_clock=node_clock)
    loop = asyncio.get_running_loop()
    _, link = await loop.create_datagram_endpoint(
        lambda: DtlsBridgeLink(device, peer, identity, key, name=name, **(link_options or {})),
        remote_addr=peer, local_addr=local)
    return link
