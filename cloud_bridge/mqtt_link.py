"""The bridge's MQTT side (ports/cpython/mqtt_transport.BridgeMqtt on paho).

Births and deaths drive presence; telemetry is stored before its PUBACK is
sent (paho manual acknowledgement), and the session is persistent (a fixed
client id, clean session off), so a bridge that dies mid-way, or is down
while devices publish, gets those messages from the broker when it is back.
The broker must queue enough for it: raise max_queued_messages and
max_inflight_messages for the bridge's client above mosquitto's defaults.
Commands go out on the device's /down topic.

Messages cross from paho's network thread to the event loop in batches: paho's
thread appends to one queue (in arrival order, births and telemetry alike) and
wakes the loop only when the queue was empty, so a burst costs one wake-up, not
one per message. A NOTIFY then needs no task: the group commit calls back, and
the callback sends the PUBACK.
"""
import asyncio
import collections
from urllib.parse import urlsplit

from ..core import frame as F
from ..ports.cpython.mqtt_transport import BridgeMqtt
from .service import PENDING


class MqttLink:
    name = "mqtt"
    shared_by_instances = True   # every instance reaches every device through the broker
    answers_announce = False     # no RESULT to a birth: a device's clock is WRITTEN (spec 3.1)

    def __init__(self, bridge, url, ca=None, share_group=None, client_id="spot-bridge"):
        u = urlsplit(url)
        if u.scheme not in ("mqtt", "mqtts"):
            raise ValueError("MQTT url must be mqtt://host:port or mqtts://host:port")
        tls = {"ca_certs": ca} if u.scheme == "mqtts" else None
        self.bridge = bridge
        self.loop = asyncio.get_running_loop()
        self._announcing = {}   # device -> its ANNOUNCE being registered
        self._inbox = collections.deque()   # (handler, args) from paho's thread, in order
        self._woken = False                 # a _drain is scheduled on the loop
        self.client = BridgeMqtt(u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883),
                                 client_id=client_id, share_group=share_group or None, tls=tls,
                                 username=u.username, password=u.password,
                                 # loop=None: callbacks run in paho's thread and _post them
                                 on_telemetry=self._post(self._telemetry),
                                 on_announce=self._post(self._announce),
                                 on_presence=self._post(self._presence), ack_telemetry=True,
                                 # a persistent session: what the broker acknowledged to
                                 # devices while this bridge was down is delivered later
                                 clean_session=False)
        bridge.add_transport(self.name, self)
        bridge.metrics.gauge("mqtt_dropped", lambda: self.client.dropped,
                             "MQTT messages dropped: outside the topic scheme, not a frame")

    async def start(self, timeout=10):
        self.client.start()
        await self.loop.run_in_executor(None, self.client.wait_ready, timeout)
        return self

    async def stop(self):
        await self.loop.run_in_executor(None, self.client.stop)

    def _post(self, handler):
        """A callback for paho's thread that queues handler(*args) for the event loop."""
        def post(*args):
            self._inbox.append((handler, args))
            if not self._woken:
                self._woken = True
                self.loop.call_soon_threadsafe(self._drain)
        return post

    def _drain(self):
        self._woken = False   # first: what paho queues from now on wakes the loop again
        inbox = self._inbox
        while inbox:
            handler, args = inbox.popleft()
            handler(*args)

    def _telemetry(self, device, frame, ack=None):
        head = F.peek(frame)
        if device not in self._announcing and (head is None or head[1] != F.ANNOUNCE):
            # the usual message: answered from the group commit, no task per message
            def stored(reply, error):
                if error is not None:   # not stored: no PUBACK, the broker sends it again
                    self.bridge.metrics.inc("telemetry_not_stored", transport=self.name)
                elif ack is not None:
                    ack()
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
            except Exception:  # not stored: no PUBACK, the broker sends it again
                self.bridge.metrics.inc("telemetry_not_stored", transport=self.name)
                return
            if ack is not None:
                ack()
        asyncio.ensure_future(store())

    def _announce(self, device, body):
        # registered under "mqtt": the broker authenticated the publisher and its ACL
        # decides who may publish on this device's topics; a CoAP identity cannot claim it
        task = asyncio.ensure_future(self.bridge.announce(self.name, body, self.bridge.clock(),
                                                          identity="mqtt"))
        self._announcing[device] = task
        task.add_done_callback(
            lambda t: self._announcing.pop(device, None) if self._announcing.get(device) is t
            else None)

    def _presence(self, device, online):
        asyncio.ensure_future(self.bridge.presence_changed(device, "online" if online else "offline"))

    async def request(self, device, frame, timeout):
        return await asyncio.wrap_future(self.client.send(device, frame, timeout=timeout))

    async def broadcast(self, service, frame):
        self.client.broadcast(service, frame)

