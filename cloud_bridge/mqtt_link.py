"""The bridge's MQTT side: the topic scheme of spec 9.2 on cloud_bridge/mqtt_session.py
(core's sans-I/O MQTT client on the event loop, no network thread).

Births and deaths drive presence; telemetry is stored before its PUBACK is
sent, and the session is persistent (a fixed client id, clean session off), so
a bridge that dies mid-way, or is down while devices publish, gets those
messages from the broker when it is back. The broker must queue enough for
it: raise max_queued_messages and max_inflight_messages for the bridge's
client above mosquitto's defaults (message_size_limit at the bridge's limit or
lower spares the broker too). A message over the bridge's own limit (`[mqtt]
max_packet`, 64 KiB) is dropped unread and acknowledged, so it does not come back
after every reconnect, and refused visibly: an error line naming the device and the
size, and `frames_rejected{reason="mqtt_oversized"}` in /metrics. Commands go out on
the device's /down topic at QoS 1 (queued while the link is down); the RESULT or
ERROR is matched by (device, message id).

Scale-out: with share_group, /up is subscribed as $share/<group>/..., so the
instances of one group split the devices' traffic; each instance then
publishes its requests with a reply level (its client id) and the device
answers on .../up/<reply>, which only that instance subscribes. Births and
deaths are subscribed without $share: every instance knows every device's
presence.

A NOTIFY needs no task: the group commit calls back, and the callback queues
the PUBACK; the session writes the PUBACKs of one loop turn at once.
"""
import asyncio
import contextlib
import logging
import ssl
from urllib.parse import urlsplit

from ..core import frame as F
from ..core.errors import BUSY
from ..core.mqtt_binding import ANNOUNCE, check_level, down_topic, signal_topic
from ..core.secure_frame import is_sealed
from ..ports.cpython.mqtt_births import addressed, birth_of, bridge_filters, frame_head
from .mqtt_session import MAX_PACKET, MqttSession
from .service import PENDING

log = logging.getLogger(__name__)


class MqttLink:
    name = "mqtt"
    shared_by_instances = True   # every instance reaches every device through the broker
    answers_announce = False     # no RESULT to a birth: a device's clock is WRITTEN (spec 3.1)

    def __init__(self, bridge, url, ca=None, share_group=None, client_id="spot-bridge",
                 max_packet=MAX_PACKET):
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts"):
            raise ValueError("MQTT url must be mqtt://host:port or mqtts://host:port")
        tls = ssl.create_default_context(cafile=ca) if u.scheme == "mqtts" else None
        if share_group:
            check_level(share_group, "share group")
            check_level(client_id, "reply key")
        self.bridge = bridge
        self.client_id = client_id
        self.share_group = share_group or None
        self.reply_key = client_id if self.share_group else None
        self.presence = {}      # device -> True (birth) / False (death)
        self.dropped = 0        # messages dropped (outside the scheme, not a frame)
        self.last_drop = None
        self.unmatched = 0      # answers without a pending request
        self._pending = {}      # (device, mid) -> (sid, future)
        self._announcing = {}   # device -> its ANNOUNCE being registered
        self.session = MqttSession(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
                                   client_id, bridge_filters(self.share_group, self.reply_key),
                                   self._message, ssl_context=tls,
                                   username=u.username, password=u.password,
                                   # a persistent session: what the broker acknowledged to
                                   # devices while this bridge was down is delivered later
                                   clean_session=False, max_packet=max_packet,
                                   on_oversized=self._oversized)
        bridge.add_transport(self.name, self)
        bridge.metrics.gauge("mqtt_dropped", lambda: self.dropped,
                             "MQTT messages dropped: outside the topic scheme, not a frame")

    async def start(self, timeout=10):
        """Connect; returns once subscribed, or after the first failure (a broker not
        there yet, a refused login or certificate: retried in the background)."""
        session = self.session.start()
        waits = [asyncio.ensure_future(session.ready.wait()),
                 asyncio.ensure_future(session.failed.wait())]
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        if not session.ready.is_set():
            log.warning("MQTT not subscribed yet (%s); retrying in the background",
                        session.last_error or "no answer in %s s" % timeout)
        return self

    async def stop(self):
        await self.session.stop()
        pending = list(self._pending.values())
        self._pending.clear()
        for _, fut in pending:
            if not fut.done():
                fut.set_exception(ConnectionError("bridge transport stopped"))

    # ------------------------------------------------------------ input

    def _drop(self, why):
        self.dropped += 1
        self.last_drop = why

    def _oversized(self, topic, size):
        """A PUBLISH over max_packet, dropped unread (and acknowledged: MQTT 3.1.1 has no
        refusal): refused like any frame the bridge cannot take, at error level, under
        its device (its topic when outside the scheme)."""
        who = topic = "a topic itself over the limit" if topic is None else topic
        with contextlib.suppress(ValueError):
            who = addressed(topic, self.reply_key)[1]
        self.bridge.peers.report("mqtt_oversized", who, "a message of %d bytes on %s, over "
                                 "the limit of %d ([mqtt] max_packet): dropped"
                                 % (size, topic, self.session.max_packet), level=logging.ERROR)

    def _message(self, topic, payload, pid, generation):
        """One PUBLISH from the session; acknowledged now, or (a NOTIFY) once stored."""
        if not self._take(topic, payload, pid, generation) and pid:
            self.session.ack(pid, generation)

    def _take(self, topic, payload, pid, generation):
        """Handle one message; True if its PUBACK waits for the store."""
        try:
            kind, device, sid = addressed(topic, self.reply_key)
        except ValueError as e:
            return self._drop(str(e))
        if kind == ANNOUNCE:
            return self._announce(device, payload, pid, generation)
        if is_sealed(payload):
            return self._drop("sealed frame without a context")
        try:
            mid, op = frame_head(payload, sid)
        except ValueError as e:
            return self._drop(str(e))
        if op == F.NOTIFY:
            self._telemetry(device, payload, pid, generation)
            return True
        if op not in (F.RESULT, F.ERROR):
            return self._drop("not an answer or notification")
        entry = self._pending.get((device, mid))
        if entry is None or entry[0] != sid:
            self.unmatched += 1
            return
        del self._pending[(device, mid)]
        if not entry[1].done():
            entry[1].set_result(payload)

    def _telemetry(self, device, frame, pid, generation):
        session = self.session

        def stored(reply, error):
            if error is not None:   # not stored: no PUBACK, the broker sends it again
                self.bridge.metrics.inc("telemetry_not_stored", transport=self.name)
                session.redeliver()   # on the next connection
            elif pid:
                session.ack(pid, generation)

        head = F.peek(frame)
        if device not in self._announcing and (head is None or head[1] != F.ANNOUNCE):
            # the usual message: answered from the group commit, no task per message
            try:
                out = self.bridge.device_frame_nowait(self.name, device, frame, stored)
            except Exception as e:
                stored(None, e)
                return
            if out is not PENDING:
                stored(out, None)
            return

        async def store():
            pending = self._announcing.get(device)
            if pending is not None:  # its birth arrived first: register before storing
                await asyncio.shield(pending)
            try:
                await self.bridge.device_frame(self.name, device, frame)
            except Exception as e:
                stored(None, e)
                return
            stored(None, None)
        asyncio.ensure_future(store())

    def _announce(self, device, payload, pid, generation):
        """A birth (registered) or a death; True when its PUBACK waits for the store."""
        try:
            body = birth_of(device, payload)
        except ValueError as e:
            return self._drop(str(e))
        online = body is not None
        if online:
            # registered under "mqtt": the broker authenticated the publisher and its ACL
            # decides who may publish on this device's topics; a CoAP identity cannot claim it
            task = asyncio.ensure_future(self.bridge.announce(
                self.name, body, self.bridge.clock(), identity="mqtt"))
            self._announcing[device] = task
            task.add_done_callback(
                lambda t: self._announcing.pop(device, None)
                if self._announcing.get(device) is t else None)
            if pid:
                task.add_done_callback(lambda t: self._born(t, pid, generation))
        if self.presence.get(device) is not online:
            self.presence[device] = online
            asyncio.ensure_future(self.bridge.presence_changed(
                device, "online" if online else "offline"))
        return online and bool(pid)

    def _born(self, task, pid, generation):
        """A birth's registration ended: acknowledged once stored, or refused for good
        (a claim or value the bridge will never take); not when the store could not take
        it (ERROR busy) or the registration failed, so the broker sends it again."""
        reply = None if task.cancelled() or task.exception() is not None else task.result()
        if reply is not None and not (F.peek(reply)[1] == F.ERROR
                                      and F.decode(reply)[3][0] == BUSY):
            self.session.ack(pid, generation)
        else:
            self.bridge.metrics.inc("registrations_not_stored", transport=self.name)
            self.session.redeliver()

    # ------------------------------------------------------------ output

    async def request(self, device, frame, timeout):
        """Publish request frame on device's /down topic (QoS 1); the answer frame,
        or TimeoutError after timeout seconds."""
        check_level(device)
        mid = F.message_id(frame)
        if mid is None or frame[0] >> 4 != F.VERSION or frame[0] & 0x0F not in F.REQUESTS:
            raise ValueError("not a request frame")
        sid = frame[1]
        key = (device, mid)
        if key in self._pending:
            raise ValueError("message id %d is outstanding for %s" % (mid, device))
        fut = asyncio.get_running_loop().create_future()
        self._pending[key] = (sid, fut)
        try:
            pid = self.session.publish(down_topic(device, sid, self.reply_key), bytes(frame), 1)
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            # a command that timed out is not sent later: held while the link was
            # down, it would otherwise go out after the reconnect
            self.session.withdraw(pid)
            raise TimeoutError("no answer in time") from None
        finally:
            entry = self._pending.get(key)
            if entry is not None and entry[1] is fut:
                del self._pending[key]

    async def broadcast(self, service, frame):
        """An informational NOTIFY of service on spot/v1/signal/<sid>, QoS 1, retained."""
        if (len(frame) < F.HEADER_SIZE or frame[0] != (F.VERSION << 4 | F.NOTIFY)
                or frame[1] != service):
            raise ValueError("a broadcast is a NOTIFY frame of its service")
        self.session.publish(signal_topic(service), bytes(frame), 1, retain=True)
