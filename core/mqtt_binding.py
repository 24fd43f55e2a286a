"""SPOT over MQTT, device side: topics, birth and will, sealed frames and the
run-time signal filter at the broker (spec section 9.2). Sans-I/O, portable.

MqttDevice sits between a socket loop and a core.mqtt_client.MqttClient. It
never touches a socket or a clock: the loop hands it the client's events and
the time, and sends whatever the client has queued afterwards.

    client = make_client("hp-1")                 # the CONNECT carries the will
    dev = MqttDevice(node, client, "hp-1", bridge_ctx=ctx)
    dev.on_event(event, now_ms)                  # for every client event
    dev.step(now_ms)                             # at dev.next_timeout(now_ms)
    dev.consume(PRICE, now_ms)                   # run-time filter, at the broker too
    dev.telemetry(HEAT_PUMP, now_ms)             # a NOTIFY of current values
    sock.send(dev.close(now_ms))                 # clean shutdown

Times are the client's integer milliseconds; the node gets whole seconds.
QoS 1 frames (results, errors, the birth, QoS 1 telemetry) go through the
client's outbox, so they survive reconnects. Incoming messages that are not a
request for this device (garbage, sealed frames that fail to open, replays,
a frame whose service differs from its topic) are dropped and counted in
`dropped`: MQTT has no error reply. Requests the node refuses are answered
with the node's ERROR frame, like any other answer.

The OSCORE code (about 28 KB of MicroPython heap) is imported only by a
device given contexts. The topic helpers and parse_topic() are shared with
the cloud side.
"""
from .compat import const
from . import frame as F
from .mqtt_client import MqttClient, OutboxFull, CONNECTED, EV_CONNECTED, EV_MESSAGE

ROOT = "spot/v1/"
SIGNAL = "signal"      # reserved second level: spot/v1/signal/<sid>
_MAX_ID_BYTES = const(64)

# kinds returned by parse_topic()
UP = const(1)          # spot/v1/<device>/<sid>/up[/<reply>]
DOWN = const(2)        # spot/v1/<device>/<sid>/down[/<reply>]
ANNOUNCE = const(3)    # spot/v1/<device>/announce
SIGNAL_TOPIC = const(4)  # spot/v1/signal/<sid>

_HEX = "0123456789abcdef"
# core.model's row fields and access right, copied: no global slot holds them on a board,
# and a board never imports core/model_numbers for them
_ID = const(0)
_ACCESS = const(4)
_R = const(1)
# core/frame_numbers' numbers, copied: no global slot holds them on a board
_HEADER_SIZE = const(4)
_NOTIFY = const(6)
_VERSION = const(1)
_READ = const(1)
_UNSUBSCRIBE = const(5)
_NOT_AUTHORISED = const(6)    # core.errors'
_MARK = const(0x00)           # core.secure_frame's: the first byte of a sealed frame


# ---------------------------------------------------------------- topics

def check_level(name, what="device id"):
    """Raise ValueError unless name can be one topic level of the scheme:
    1..64 UTF-8 bytes, no '/', '+', '#' or U+0000, not starting with '$',
    and not the reserved word 'signal'."""
    if not isinstance(name, str):
        raise ValueError(what + " must be a str")
    n = len(name.encode("utf-8"))
    if not 0 < n <= _MAX_ID_BYTES:
        raise ValueError(what + " must be 1..64 bytes")
    for c in "/+#\x00":
        if c in name:
            raise ValueError(what + " must not contain '/', '+', '#' or NUL")
    if name[0] == "$" or name == SIGNAL:
        raise ValueError(what + " must not start with '$' or be 'signal'")
    return name


def sid_level(sid):
    """A service id as its topic level: two lower-case hex digits."""
    if not 0 <= sid <= 0xFE:
        raise ValueError("service id 0..254")
    return _HEX[sid >> 4] + _HEX[sid & 15]


def _parse_sid(name):
    # a topic level's service id, None if it is not one
    if len(name) != 2 or name[0] not in _HEX or name[1] not in _HEX:
        return None
    sid = _HEX.index(name[0]) << 4 | _HEX.index(name[1])
    return None if sid == 0xFF else sid


def up_topic(device, sid, reply=None):
    t = ROOT + device + "/" + sid_level(sid) + "/up"
    return t if reply is None else t + "/" + reply


def down_topic(device, sid, reply=None):
    t = ROOT + device + "/" + sid_level(sid) + "/down"
    return t if reply is None else t + "/" + reply


def announce_topic(device):
    return ROOT + device + "/announce"


def signal_topic(sid):
    return ROOT + SIGNAL + "/" + sid_level(sid)


def parse_topic(topic):
    """(kind, device, sid, reply) of a topic of the scheme, else None.
    device is None for signal topics, sid None for announce topics, reply
    None unless an up/down topic carries a reply level."""
    if not topic.startswith(ROOT):
        return None
    levels = topic[len(ROOT):].split("/")
    n = len(levels)
    if n < 2 or not levels[0] or levels[0][0] == "$":
        return None
    if levels[0] == SIGNAL:
        sid = _parse_sid(levels[1]) if n == 2 else None
        return None if sid is None else (SIGNAL_TOPIC, None, sid, None)
    if n == 2:
        return (ANNOUNCE, levels[0], None, None) if levels[1] == "announce" else None
    if n > 4 or levels[2] not in ("up", "down"):
        return None
    sid = _parse_sid(levels[1])
    if sid is None:
        return None
    reply = None
    if n == 4:
        reply = levels[3]
        if not reply or reply[0] == "$" or reply == SIGNAL:
            return None
    return (UP if levels[2] == "up" else DOWN, levels[0], sid, reply)


def will_of(device):
    """The last will of a device: an empty retained QoS 1 message on its
    announce topic (death; it also clears the retained birth)."""
    return (announce_topic(check_level(device)), b"", 1, True)


def make_client(device, client_id=None, **kw):
    """An MqttClient for device with the SPOT will set (other arguments as
    MqttClient's); the client id defaults to the device id."""
    return MqttClient(device if client_id is None else client_id,
                      will=will_of(device), **kw)


# ---------------------------------------------------------------- device

class MqttDevice:
    """One node on one MQTT session. See the module docstring.

    bridge_ctx: the OSCORE SecurityContext shared with the bridge, or None.
      With it every frame this binding sends is sealed (telemetry with this
      context, answers with the requester's), and plain requests are answered
      ERROR not-authorised without reaching the node.
    contexts: more contexts, for other controllers allowed to talk to the
      device directly; a sealed request names its context by kid, and that
      kid is the peer handed to node.receive (and so to node.authorise).
    peer: the peer identity of plain requests (the bridge link).
    qos_telemetry: 0 or 1, for NOTIFY frames (subscriptions, telemetry()).
    node_clock: the node's time in seconds from the client's milliseconds
      (default now // 1000; a simulator runs its nodes on simulated Unix time).
    """

    def __init__(self, node, client, device_id, bridge_ctx=None, peer=b"bridge",
                 qos_telemetry=0, contexts=(), node_clock=None):
        check_level(device_id)
        if qos_telemetry not in (0, 1):
            raise ValueError("telemetry QoS must be 0 or 1")
        self.node = node
        self.client = client
        self.device_id = device_id
        self.contexts = ([] if bridge_ctx is None else [bridge_ctx]) + list(contexts)
        self._sf = None
        if self.contexts:
            from . import secure_frame
            self._sf = secure_frame
        self.peer = peer
        self.node_clock = node_clock or (lambda ms: ms // 1000)
        self.qos_telemetry = qos_telemetry
        self.dropped = 0       # incoming messages dropped without an answer
        self.last_drop = None  # why the last one was dropped
        self.unsent = 0        # frames that could not be queued for sending
        self.births = 0        # ANNOUNCE births queued
        self._signals = []     # services whose signal topic is subscribed
        self._topics = {}      # sid -> its up topic as bytes, built once
        self._now = 0          # ms of the step() running (for _notified)
        self._emit = self._notified   # bound once: step() hands it to node.step()
        client.subscribe([(ROOT + device_id + "/+/down/#", 1)])
        self._sync_signals(None)

    # ------------------------------------------------------------ input

    def on_event(self, event, now):
        """Handle one MqttClient event (birth after CONNACK, messages)."""
        if event.kind == EV_CONNECTED:
            self.birth(now)
        elif event.kind == EV_MESSAGE:
            self.on_message(event.topic, event.payload, now)

    def on_message(self, topic, payload, now):
        """Handle one PUBLISH received on topic."""
        t = parse_topic(topic)
        if t is None:
            return self._drop("topic outside the scheme")
        kind, device, sid, reply = t
        if kind == DOWN and device == self.device_id:
            return self._request(sid, reply, payload, now)
        if kind != SIGNAL_TOPIC:
            return self._drop("not a topic of this device")
        if sid not in self.node.consumes:
            return self._drop("signal not consumed")
        if (len(payload) < _HEADER_SIZE or payload[1] != sid
                or payload[0] != (_VERSION << 4 | _NOTIFY)):
            return self._drop("signal topic carries only NOTIFY of its service")
        self.node.receive(payload, self.node_clock(now), None)

    def _request(self, sid, reply, payload, now):
        ctx = None
        frame = payload
        if len(payload) and payload[0] == _MARK:
            if self._sf is None:
                return self._drop("sealed frame without a context")
            try:
                frame, ctx = self._sf.open_sealed(self.contexts, payload)
            except self._sf.OscoreError as e:
                return self._drop("not opened: " + e.reason)
        mid = F.message_id(frame)
        if mid is None:
            return self._drop("no frame header")
        if frame[1] != sid:
            return self._drop("service differs from the topic")
        if not _READ <= frame[0] & 0x0F <= _UNSUBSCRIBE:   # not a request
            return self._drop("not a request")
        if ctx is None and self.contexts:
            answer = F.error(sid, mid, _NOT_AUTHORISED)
        else:
            peer = self.peer if ctx is None else ctx.recipient_id
            answer = self.node.receive(frame, self.node_clock(now), peer)
        if answer is not None:
            self._send(answer, 1, ctx, reply, now)

    def _drop(self, reason):
        self.dropped += 1
        self.last_drop = reason

    # ------------------------------------------------------------ output

    def birth(self, now):
        """Publish the retained ANNOUNCE (after every CONNACK, and when what
        the node consumes changed). Sent only while connected: a reconnect
        publishes a fresh one anyway."""
        if self.client.state != CONNECTED:
            return None
        topic = announce_topic(self.device_id)
        payload = self.node.announce()
        self.births += 1
        qos = 1 if self.client.outbox_room(len(topic) + len(payload) + 8) else 0
        return self.client.publish(topic, payload, qos, True, now)

    def offline(self, now):
        """Clear the retained birth before a clean DISCONNECT (which makes the
        broker discard the will). QoS 0 is enough: the DISCONNECT follows on
        the same stream, and if the link breaks first the will does the job."""
        return self.client.publish(announce_topic(self.device_id), b"", 0, True, now)

    def close(self, now):
        """Clean shutdown: the empty retained announce, then DISCONNECT.
        Returns the bytes to send before closing the socket."""
        self.offline(now)
        return self.client.disconnect(now)

    def publish_notify(self, frame, now):
        """Publish a NOTIFY frame on its service's up topic at the telemetry
        QoS, sealed for the bridge when configured. False if not queued."""
        if len(frame) < _HEADER_SIZE or frame[0] != (_VERSION << 4 | _NOTIFY):
            raise ValueError("not a NOTIFY frame")
        ctx = self.contexts[0] if self.contexts else None
        return self._send(frame, self.qos_telemetry, ctx, None, now)

    def telemetry(self, sid, now, oids=None):
        """Publish the current values of service sid (all readable objects,
        or oids) as a NOTIFY with message id 0. False if not queued."""
        node = self.node
        svc = node.services.get(sid)
        if svc is None:
            raise ValueError("service not served")
        if oids is None:
            oids = [r[_ID] for r in svc.rows if r[_ACCESS] & _R]
        values = {}
        for oid in oids:
            v = node.wire(sid, oid)
            if v is not None:
                values[oid] = v
        body = [node.stamp(self.node_clock(now)), values]
        return self.publish_notify(F.encode(_NOTIFY, sid, 0, body), now)

    def _send(self, frame, qos, ctx, reply, now):
        sid = frame[1]
        topic = None if reply is not None else self._topics.get(sid)
        if topic is None:
            topic = up_topic(self.device_id, sid, reply).encode()
            if reply is None:
                self._topics[sid] = topic
        payload = frame
        if ctx is not None:
            try:
                payload = self._sf.seal(ctx, frame)
            except self._sf.OscoreError:  # sequence numbers exhausted or not reserved
                self.unsent += 1
                return False
        try:
            pid = self.client.publish(topic, payload, qos, False, now)
        except OutboxFull:
            pid = None
        if pid is None:
            self.unsent += 1
            return False
        return True

    # ------------------------------------------------------------ time

    def step(self, now):
        """Publish the node's due notifications; follow changes of what the
        node consumes (subscribe, unsubscribe, new birth)."""
        if self._sync_signals(now):
            self.birth(now)
        self._now = now
        self.node.step(self.node_clock(now), self._emit)   # no list per turn

    def _notified(self, peer, frame):
        ctx = None
        if self.contexts:
            for ctx in self.contexts:
                if ctx.recipient_id == peer:
                    break
            else:  # its context was withdrawn: nobody may read it
                self.unsent += 1
                return
        self._send(frame, self.qos_telemetry, ctx, None, self._now)

    def next_timeout(self, now):
        """Milliseconds until step() has work, or None."""
        d = self.node.next_deadline(self.node_clock(now))
        if d is None:
            return None
        return max(0, int(d * 1000))

    # ------------------------------------------------------------ filter

    def consume(self, sid, now):
        """Start taking broadcasts of sid: node filter, broker subscription
        and a new birth (ANNOUNCE key 2)."""
        self.node.consume(sid)
        if self._sync_signals(now):
            self.birth(now)

    def ignore(self, sid, now):
        """Stop taking broadcasts of sid, at the broker as in the node."""
        self.node.ignore(sid)
        if self._sync_signals(now):
            self.birth(now)

    def _sync_signals(self, now):
        consumes = self.node.consumes
        have = self._signals
        if len(consumes) == len(have):   # the same ones, as on every idle turn: no lists
            for s in consumes:           # (nor closure cells: the comprehensions are below)
                if s not in have:
                    break
            else:
                return False
        return self._resync(consumes, now)

    def _resync(self, consumes, now):
        new = [s for s in consumes if s not in self._signals]
        gone = [s for s in self._signals if s not in consumes]
        if gone:
            self.client.unsubscribe([signal_topic(s) for s in gone], now)
        if new:
            self.client.subscribe([(signal_topic(s), 1) for s in new], now)
        if new or gone:
            self._signals = [s for s in self._signals if s in consumes] + new
            return True
        return False
