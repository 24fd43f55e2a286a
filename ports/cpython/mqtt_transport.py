"""SPOT over MQTT, cloud side, on paho-mqtt 2.x (`pip install ".[paho]"`).

`spot bridge` does not use this module: its MQTT link is cloud_bridge/mqtt_link.py
on core's sans-I/O client in the event loop (cloud_bridge/mqtt_session.py). This
one is for other cloud-side programs that want a thread of their own and OSCORE
contexts per device.

BridgeMqtt keeps one MQTT 3.1.1 session (TLS optional) and speaks the topic
scheme of spec section 9.2 (core.mqtt_binding):

    bridge = BridgeMqtt("broker", 8883, tls={"ca_certs": "ca.pem"},
                        contexts={"hp-1": ctx}, loop=asyncio.get_running_loop(),
                        on_telemetry=..., on_announce=..., on_presence=...)
    bridge.start(); bridge.wait_ready(10)
    frame = await bridge.request("hp-1", F.encode(F.WRITE, 0x10, mid, {7: 215}))
    bridge.broadcast(0x05, forecast_notify)
    bridge.stop()

- Requests go out on spot/v1/<device>/<sid>/down at QoS 1 (paho queues them
  while the link is down), sealed with the device's OSCORE context when one
  is configured; the RESULT or ERROR is matched by (device, message id) and
  completes the future send() returned.
- Telemetry (NOTIFY on /up) goes to on_telemetry(device, frame); births and
  deaths on spot/v1/<device>/announce drive `presence` and on_presence.
- Scale-out: with share_group, /up is subscribed as $share/<group>/...
  so instances of one group split the devices' traffic; each instance then
  publishes requests with a reply level (its client id) and the device
  answers on .../up/<reply>, which only that instance subscribes, so every
  instance gets the answers to its own requests. Births and deaths are
  subscribed without $share: every instance knows every device's presence.

paho runs its network loop in a thread. Callbacks and futures are handed
over thread-safely: with `loop` (asyncio) every callback runs in the loop
through loop.call_soon_threadsafe, and request() awaits the future there;
without it callbacks run in paho's thread.
"""
import asyncio
import concurrent.futures
import heapq
import logging
import ssl
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from ...core import frame as F
from ...core.mqtt_binding import ANNOUNCE, check_level, down_topic, signal_topic
from ...core.oscore import OscoreError
from ...core.secure_frame import seal, open_sealed, is_sealed
from .mqtt_births import addressed, birth_of, bridge_filters, frame_head

log = logging.getLogger(__name__)

_OK = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)  # NO_CONN: queued for the reconnect


class BridgeMqtt:
    """The bridge's MQTT session. See the module docstring.

    contexts: {device id: SecurityContext} of devices whose frames are sealed
      (the bridge's side: sender id = the bridge's kid, recipient id = the
      device's). Frames from such a device must be sealed; plain ones are
      dropped. Devices without a context talk plain frames.
    tls: None, an ssl.SSLContext, or a dict of paho tls_set() arguments
      (ca_certs, certfile, keyfile, ...).
    share_group: subscribe /up through $share/<share_group>/ (scale-out).
    reply_key: reply level for requests (default: the client id when
      share_group is set, else none: answers on plain /up).
    clean_session: False with a fixed client_id keeps QoS 1 messages for the
      bridge at the broker while it is away (and across broker restarts with
      broker persistence).
    """

    def __init__(self, host="127.0.0.1", port=1883, client_id=None, share_group=None,
                 reply_key=None, contexts=None, tls=None, username=None, password=None,
                 keepalive=30, clean_session=True, request_timeout=30.0, loop=None,
                 on_telemetry=None, on_announce=None, on_presence=None, on_reply=None,
                 reconnect_delay=(1, 30), ack_telemetry=False):
        self.client_id = client_id or "spot-bridge-" + uuid.uuid4().hex[:12]
        if share_group is not None:
            check_level(share_group, "share group")
            if reply_key is None:
                reply_key = self.client_id
        if reply_key is not None:
            check_level(reply_key, "reply key")
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.share_group = share_group
        self.reply_key = reply_key
        self.contexts = dict(contexts or {})
        self.request_timeout = request_timeout
        self.loop = loop
        self.on_telemetry = on_telemetry    # (device, frame)
        self.on_announce = on_announce      # (device, ANNOUNCE body)
        self.on_presence = on_presence      # (device, online: bool)
        self.on_reply = on_reply            # (device, frame): RESULT/ERROR nobody waits for
        self.presence = {}                  # device -> True (birth) / False (death)
        self.announces = {}                 # device -> last ANNOUNCE body
        self.dropped = 0                    # messages dropped (garbage, unopenable, misrouted)
        self.last_drop = None
        self.unmatched = 0                  # answers without a pending request
        self._lock = threading.Lock()
        self._pending = {}                  # (device, mid) -> (sid, future)
        self._deadlines = []                # heap of (deadline, seq, key, future)
        self._seq = 0
        self._mids = {}                     # device -> last message id handed out
        self._ready = threading.Event()
        self._sub_mid = None
        self._stopping = False
        self._reaper = None
        self._wake = threading.Condition(self._lock)

        # ack_telemetry: a NOTIFY's PUBACK waits until on_telemetry(device, frame, ack)
        # calls ack() (after the bridge stored it); everything else is acknowledged at once
        self.ack_telemetry = ack_telemetry
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        clean_session=clean_session, protocol=mqtt.MQTTv311,
                        manual_ack=ack_telemetry)
        if username is not None:
            c.username_pw_set(username, password)
        if isinstance(tls, ssl.SSLContext):
            c.tls_set_context(tls)
        elif tls is not None:
            c.tls_set(**tls)
        c.reconnect_delay_set(*reconnect_delay)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._client = c

    # ------------------------------------------------------------ lifecycle

    def start(self):
        """Connect in the background (paho's thread); reconnects by itself."""
        self._stopping = False
        self._reaper = threading.Thread(target=self._reap, name="spot-bridge-reaper",
                                        daemon=True)
        self._reaper.start()
        self._client.connect_async(self.host, self.port, self.keepalive)
        self._client.loop_start()
        return self

    def wait_ready(self, timeout=None):
        """True once connected and subscribed (after the first SUBACK)."""
        return self._ready.wait(timeout)

    @property
    def connected(self):
        return self._client.is_connected()

    def stop(self):
        """Disconnect cleanly, stop paho's thread, fail what is still pending."""
        self._stopping = True
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()
        with self._lock:
            pending = list(self._pending.values())
            self._pending.clear()
            self._deadlines = []
            self._wake.notify_all()
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(ConnectionError("bridge transport stopped"))
        if self._reaper is not None:
            self._reaper.join(5)

    def set_context(self, device, ctx):
        """Seal frames for device with ctx from now on (None: plain frames)."""
        check_level(device)
        with self._lock:
            if ctx is None:
                self.contexts.pop(device, None)
            else:
                self.contexts[device] = ctx

    # ------------------------------------------------------------ requests

    def next_mid(self, device):
        """A message id 1..65535 not outstanding for device."""
        with self._lock:
            mid = self._mids.get(device, 0)
            for _ in range(65535):
                mid = mid % 65535 + 1
                if (device, mid) not in self._pending:
                    self._mids[device] = mid
                    return mid
        raise RuntimeError("65535 requests outstanding for %s" % device)

    def send(self, device, frame, timeout=None):
        """Publish request frame to device; a concurrent.futures.Future that
        completes with the answer frame (RESULT or ERROR, opened), or fails
        with TimeoutError after timeout seconds (default request_timeout)."""
        check_level(device)
        mid = F.message_id(frame)
        if mid is None or frame[0] >> 4 != F.VERSION or frame[0] & 0x0F not in F.REQUESTS:
            raise ValueError("not a request frame")
        sid = frame[1]
        key = (device, mid)
        fut = concurrent.futures.Future()
        deadline = time.monotonic() + (self.request_timeout if timeout is None else timeout)
        with self._lock:
            if key in self._pending:
                raise ValueError("message id %d is outstanding for %s" % (mid, device))
            ctx = self.contexts.get(device)
            payload = seal(ctx, frame) if ctx is not None else bytes(frame)
            self._pending[key] = (sid, fut)
            self._seq += 1
            heapq.heappush(self._deadlines, (deadline, self._seq, key, fut))
            self._wake.notify()
        fut.add_done_callback(lambda f, k=key: self._forget(k, f))
        info = self._client.publish(down_topic(device, sid, self.reply_key), payload, qos=1)
        if info.rc not in _OK:
            self._forget(key, fut)
            fut.set_exception(ConnectionError("publish failed: %s" % mqtt.error_string(info.rc)))
        return fut

    def send_request(self, device, op, sid, body=None, timeout=None):
        """send() a request built here with a fresh message id."""
        return self.send(device, F.encode(op, sid, self.next_mid(device), body), timeout)

    async def request(self, device, frame, timeout=None):
        """send() from asyncio: the answer frame."""
        return await asyncio.wrap_future(self.send(device, frame, timeout))

    def broadcast(self, sid, frame, retain=True):
        """Publish an informational NOTIFY of service sid on spot/v1/signal/<sid>
        (QoS 1, retained by default: a device that subscribes later gets the
        latest one). Plain: a broadcast has no per-device context."""
        if (len(frame) < F.HEADER_SIZE or frame[0] != (F.VERSION << 4 | F.NOTIFY)
                or frame[1] != sid):
            raise ValueError("a broadcast is a NOTIFY frame of its service")
        return self._client.publish(signal_topic(sid), bytes(frame), qos=1, retain=retain)

    def _forget(self, key, fut):
        with self._lock:
            entry = self._pending.get(key)
            if entry is not None and entry[1] is fut:
                del self._pending[key]

    def _reap(self):
        """Fail requests whose deadline passed (the heap is pruned lazily)."""
        with self._lock:
            while not self._stopping:
                now = time.monotonic()
                expired = []
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, _, key, fut = heapq.heappop(self._deadlines)
                    entry = self._pending.get(key)
                    if entry is not None and entry[1] is fut:
                        del self._pending[key]
                        expired.append(fut)
                if expired:
                    self._lock.release()
                    try:
                        for fut in expired:
                            if not fut.done():
                                fut.set_exception(TimeoutError("no answer in time"))
                    finally:
                        self._lock.acquire()
                    continue
                wait = self._deadlines[0][0] - now if self._deadlines else None
                self._wake.wait(wait)

    # ------------------------------------------------------------ paho callbacks

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT connection refused: %s", reason_code)
            return
        rc, mid = client.subscribe(bridge_filters(self.share_group, self.reply_key))
        self._sub_mid = mid

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if mid == self._sub_mid:
            failed = [r for r in reason_codes if r.is_failure]
            if failed:
                log.error("MQTT subscription refused: %s", failed)
            else:
                self._ready.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._stopping:
            log.info("MQTT link lost (%s); paho reconnects", reason_code)

    def _on_message(self, client, userdata, msg):
        ack = (lambda: client.ack(msg.mid, msg.qos)) if self.ack_telemetry else None
        try:
            deferred = self._message(msg.topic, bytes(msg.payload), ack)
        except Exception:  # a callback must never kill paho's thread
            log.exception("handling %r", msg.topic)
            deferred = False
        if ack is not None and deferred is not True:
            ack()

    # ------------------------------------------------------------ input

    def _drop(self, why):
        self.dropped += 1
        self.last_drop = why

    def _message(self, topic, payload, ack=None):
        """Handle one message; True if its acknowledgement was handed to on_telemetry."""
        try:
            kind, device, sid = addressed(topic, self.reply_key)
        except ValueError as e:
            return self._drop(str(e))
        if kind == ANNOUNCE:
            return self._announce(device, payload)
        with self._lock:
            ctx = self.contexts.get(device)
            if ctx is not None:
                if not is_sealed(payload):
                    return self._drop("plain frame from a sealed device")
                try:
                    frame, _ = open_sealed([ctx], payload)
                except OscoreError as e:
                    return self._drop("not opened: " + e.reason)
            elif is_sealed(payload):
                return self._drop("sealed frame without a context")
            else:
                frame = payload
        try:
            mid, op = frame_head(frame, sid)
        except ValueError as e:
            return self._drop(str(e))
        if op == F.NOTIFY:
            if ack is not None and self.on_telemetry is not None:
                self._emit(self.on_telemetry, device, frame, ack)
                return True
            return self._emit(self.on_telemetry, device, frame)
        if op not in (F.RESULT, F.ERROR):
            return self._drop("not an answer or notification")
        with self._lock:
            entry = self._pending.get((device, mid))
            if entry is not None and entry[0] == sid:
                del self._pending[(device, mid)]
            else:
                entry = None
        if entry is None:
            self.unmatched += 1
            return self._emit(self.on_reply, device, frame)
        fut = entry[1]
        if not fut.done():
            fut.set_result(frame)

    def _announce(self, device, payload):
        try:
            body = birth_of(device, payload)
        except ValueError as e:
            return self._drop(str(e))
        if body is None:
            online = False
        else:
            self.announces[device] = body
            self._emit(self.on_announce, device, body)
            online = True
        if self.presence.get(device) is not online:
            self.presence[device] = online
            self._emit(self.on_presence, device, online)

    def _emit(self, callback, *args):
        if callback is None:
            return
        if self.loop is not None:
            self.loop.call_soon_threadsafe(callback, *args)
            return
        try:
            callback(*args)
        except Exception:
            log.exception("bridge callback %r", callback)
