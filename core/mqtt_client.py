"""Sans-I/O MQTT 3.1.1 client state machine with a QoS 1 outbox. Portable.

The caller owns the socket and the clock. All times are integer
milliseconds from a monotonic clock the caller keeps (the keep-alive is
given in seconds, as on the wire).

    c = MqttClient('spot1', will=('spot/spot1/status', b'offline', 1, True))
    sock.send(c.connect(now))
    events = c.receive(sock.recv(n), now)   # hand the events out first,
    sock.send(c.data_to_send())             # then send PUBACKs, replays
    sock.send(c.step(now))                  # at c.next_timeout(now)
    if c.state == DISCONNECTED: close the socket, reconnect later

QoS 1 publishes live in an outbox until PUBACKed; after every CONNACK the
outbox is re-sent in order (DUP set on what was sent before), so a QoS 1
message survives reconnects. QoS 2 is not supported.

A PUBLISH longer than max_packet is dropped unread (core.mqtt.StreamParser skips
its payload) and, at QoS 1, acknowledged: MQTT 3.1.1 has no refusal, and the
broker would send it again after every reconnect. EV_OVERSIZED says so, and
`oversized` counts them.
"""
from .compat import const
from .mqtt import (MqttError, StreamParser, packet_name, encode_connect, encode_publish,
                   encode_puback, encode_subscribe, encode_unsubscribe, check_filter)

# core/mqtt_numbers' numbers, copied: no global slot holds them on a board
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_SUBACK = const(9)
_UNSUBACK = const(11)
_PINGRESP = const(13)
_DEFAULT_MAX_PACKET = const(16384)

DISCONNECTED = const(0)
CONNECTING = const(1)   # CONNECT sent, waiting for CONNACK
CONNECTED = const(2)

# Event kinds
EV_CONNECTED = 'connected'        # .session_present
EV_MESSAGE = 'message'            # .topic .payload .qos .retain .dup .pid
EV_PUBACK = 'puback'              # .pid
EV_SUBACK = 'suback'              # .pid .granted (list; 0x80 = refused)
EV_UNSUBACK = 'unsuback'          # .pid
EV_OVERSIZED = 'oversized'        # .topic (None: itself too long) .qos .pid .size
EV_DISCONNECTED = 'disconnected'  # .reason .error (False only for our own
                                  # DISCONNECT) .return_code (CONNACK refusal)


class Event:
    """Something the application should know; kind is one of EV_*."""
    topic = None
    payload = None
    qos = 0
    retain = False
    dup = False
    pid = 0
    granted = None
    session_present = False
    reason = None
    error = False
    return_code = 0
    size = 0

    def __init__(self, kind):
        self.kind = kind

    def __repr__(self):
        if self.kind == EV_MESSAGE:
            return '<message %r qos=%d retain=%d %r>' % (
                self.topic, self.qos, self.retain, self.payload)
        if self.kind == EV_DISCONNECTED:
            return '<disconnected %r error=%s>' % (self.reason, self.error)
        return '<%s pid=%d>' % (self.kind, self.pid)


class OutboxFull(Exception):
    """The outbox cannot take another QoS 1 message; nothing was queued."""


class MemoryOutbox:
    """Unacknowledged QoS 1 PUBLISH packets in publish order, in RAM.

    The interface a persistent (flash) outbox implements as well:
    room(size) -> bool, append(pid, packet), ack(pid) -> bool,
    iteration yields (pid, packet) oldest first, len(), pid in outbox.
    """

    def __init__(self, max_messages=32, max_bytes=16384):
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._items = []
        self._bytes = 0

    def room(self, size):
        return (len(self._items) < self.max_messages
                and self._bytes + size <= self.max_bytes)

    def append(self, pid, packet):
        if not self.room(len(packet)):
            raise OutboxFull('outbox holds %d messages, %d bytes'
                             % (len(self._items), self._bytes))
        self._items.append((pid, packet))
        self._bytes += len(packet)

    def ack(self, pid):
        items = self._items
        for i in range(len(items)):
            if items[i][0] == pid:
                self._bytes -= len(items[i][1])
                items.pop(i)
                return True
        return False

    def __iter__(self):
        return iter(self._items)

    def __contains__(self, pid):
        for item in self._items:
            if item[0] == pid:
                return True
        return False

    def __len__(self):
        return len(self._items)


class MqttClient:
    """One MQTT session seen from the device. See the module docstring."""
    puback_events = True   # False: a PUBACK makes no EV_PUBACK (a board's link needs none)
    ack_on_receive = True  # False: the owner sends each QoS 1 message's PUBACK itself
                           # (encode_puback), e.g. once it has stored the message

    def __init__(self, client_id, keepalive=60, clean_session=True, will=None,
                 username=None, password=None, outbox=None, retry_ms=10000,
                 ping_timeout_ms=None, connect_timeout_ms=10000,
                 max_packet=_DEFAULT_MAX_PACKET):
        # will: (topic, payload, qos, retain), published by the broker if
        # the link dies without our DISCONNECT (SPOT's death notice).
        # The CONNECT every connection starts with, built now: bad arguments fail here
        # rather than at the first connect().
        if will is None:
            will = (None, b'', 0, False)
        elif will[2] > 1:
            raise ValueError('will QoS 2 is not supported')
        self._connect = bytes(encode_connect(client_id, keepalive, clean_session, will[0],
                                             will[1], will[2], will[3], username, password))
        self.keepalive_ms = keepalive * 1000
        if ping_timeout_ms is None:
            ping_timeout_ms = max(1000, self.keepalive_ms // 2)
        self.ping_timeout_ms = ping_timeout_ms
        self.retry_ms = retry_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.outbox = MemoryOutbox() if outbox is None else outbox
        self.state = DISCONNECTED
        self.oversized = 0      # PUBLISH packets over max_packet dropped (and acknowledged)
        self._parser = StreamParser(max_packet)
        self._out = bytearray()
        self._events = []
        self._now = 0
        self._last_sent = 0
        self._last_recv = 0
        self._connect_sent = 0
        self._ping_sent = -1
        self._next_id = 0
        # pid -> ms of last transmission; entries of a pre-filled (persisted)
        # outbox may have been sent before a reboot, so they go out with DUP.
        self._sent_at = {}
        for pid, _ in self.outbox:
            self._sent_at[pid] = -1
        self._subs = []         # [filter, qos] wanted, in subscribe order
        self._subs_new = []     # subscribed while offline, broker unaware
        self._unsubs_new = []   # unsubscribed while offline
        self._pending = {}      # SUBSCRIBE/UNSUBSCRIBE pid -> True

    # -------------------------------------------------------------- output

    def data_to_send(self):
        """Bytes queued by publish/subscribe/receive; send them in order."""
        out = self._out
        if out:
            self._out = bytearray()
            self._last_sent = self._now
        return out

    def connect(self, now):
        """Start a session on a fresh connection: the CONNECT bytes."""
        self._now = now
        self.state = CONNECTING
        self._parser.reset()
        self._out = bytearray()
        self._pending = {}
        self._ping_sent = -1
        self._connect_sent = now
        self._last_sent = now
        self._last_recv = now
        return self._connect

    def disconnect(self, now=None):
        """Clean close (the broker drops the will): the bytes to send last."""
        if now is not None:
            self._now = now
        if self.state == DISCONNECTED:
            return b''
        out = self._out if self.state == CONNECTED else bytearray()
        out += b'\xe0\x00'   # DISCONNECT
        self._out = bytearray()
        self._close('client disconnect', False)
        return out

    def connection_lost(self, reason='connection lost', now=None):
        """The caller's socket died; returns the resulting events."""
        if now is not None:
            self._now = now
        if self.state != DISCONNECTED:
            self._close(reason, True)
        return self.take_events()

    def take_events(self):
        ev = self._events
        self._events = []
        return ev

    def has_events(self):
        """True when take_events() has any (asked first, an idle turn makes no list)."""
        return bool(self._events)

    def _close(self, reason, error, return_code=0):
        self.state = DISCONNECTED
        self._parser.reset()
        self._out = bytearray()
        self._ping_sent = -1
        self._pending = {}
        e = Event(EV_DISCONNECTED)
        e.reason = reason
        e.error = error
        e.return_code = return_code
        self._events.append(e)

    def _alloc_pid(self):
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            pid = self._next_id
            if pid not in self._sent_at and pid not in self._pending:
                # (one queued while offline is not in _sent_at yet)
                if not len(self.outbox) or pid not in self.outbox:
                    return pid
        raise OutboxFull('no free packet identifier')

    # -------------------------------------------------------------- API

    def publish(self, topic, payload, qos=0, retain=False, now=None):
        """Queue a PUBLISH. Returns the packet id for QoS 1 (the message is
        kept in the outbox until PUBACKed, sent now or after the next
        CONNACK), 0 for QoS 0 sent, None for QoS 0 dropped while not
        connected. Raises OutboxFull (nothing queued) or ValueError."""
        if now is not None:
            self._now = now
        if qos == 0:
            packet = encode_publish(topic, payload, 0, retain)
            if self.state != CONNECTED:
                return None
            self._out += packet
            return 0
        if qos != 1:
            raise ValueError('only QoS 0 and 1 are supported')
        pid = self._alloc_pid()
        packet = encode_publish(topic, payload, 1, retain, False, pid)
        self.outbox.append(pid, packet)
        if self.state == CONNECTED:
            self._out += packet
            self._sent_at[pid] = self._now
        return pid

    def outbox_room(self, size=0):
        """True if a QoS 1 PUBLISH of size bytes would fit in the outbox."""
        return self.outbox.room(size)

    def subscribe(self, filters, now=None):
        """Subscribe to [(filter, qos)], remembered across reconnects.
        Returns the SUBSCRIBE pid, or None if it goes out after CONNACK."""
        if now is not None:
            self._now = now
        for f, qos in filters:
            check_filter(f)
            if qos not in (0, 1):
                raise ValueError('only QoS 0 and 1 subscriptions are supported')
        for f, qos in filters:
            self._remember(self._subs, f, qos)
            if self.state != CONNECTED:
                self._remember(self._subs_new, f, qos)
                if f in self._unsubs_new:
                    self._unsubs_new.remove(f)
        if self.state != CONNECTED:
            return None
        return self._request(encode_subscribe, filters)

    def unsubscribe(self, filters, now=None):
        """Forget filters; returns the UNSUBSCRIBE pid or None if offline."""
        if now is not None:
            self._now = now
        for f in filters:
            check_filter(f)
        self._subs = [s for s in self._subs if s[0] not in filters]
        self._subs_new = [s for s in self._subs_new if s[0] not in filters]
        if self.state != CONNECTED:
            for f in filters:
                if f not in self._unsubs_new:
                    self._unsubs_new.append(f)
            return None
        return self._request(encode_unsubscribe, filters)

    def subscriptions(self):
        return [(f, q) for f, q in self._subs]

    @staticmethod
    def _remember(subs, f, qos):
        for s in subs:
            if s[0] == f:
                s[1] = qos
                return
        subs.append([f, qos])

    def _request(self, encode, filters):
        # a SUBSCRIBE or UNSUBSCRIBE (encode_subscribe, encode_unsubscribe) queued
        pid = self._alloc_pid()
        self._out += encode(pid, filters)
        self._pending[pid] = True
        return pid

    # -------------------------------------------------------------- input

    def receive(self, data, now):
        """Feed bytes from the socket; returns events. Replies (PUBACK,
        outbox replay) wait in data_to_send() until the events are handled."""
        self.take_in(data, now)
        return self.take_events()

    def take_in(self, data, now):
        """receive() that leaves the events in has_events()/take_events() (a turn
        without any makes no list)."""
        self._now = now
        if self.state == DISCONNECTED:
            return
        self._last_recv = now
        parser = self._parser
        try:
            parser.add(data)
            while self.state != DISCONNECTED:
                p = parser.next_packet()
                if p is None:
                    break
                self._handle(p, now)
        except MqttError as e:
            self._close('malformed packet: %s' % e, True)

    def _handle(self, p, now):
        t = p.type
        if self.state == CONNECTING:
            if t != _CONNACK:
                return self._close('protocol error: %s before CONNACK' % packet_name(t), True)
            return self._on_connack(p, now)
        if t == _PUBLISH:
            if p.qos > 1:
                return self._close('protocol error: QoS 2 PUBLISH was never subscribed', True)
            if p.oversized:
                # acknowledged whoever owns the acknowledgements: there is nothing to store
                self.oversized += 1
                e = Event(EV_OVERSIZED)
                e.topic = p.topic
                e.qos = p.qos
                e.pid = p.pid
                e.size = p.oversized
                self._events.append(e)
                if p.qos:
                    self._out += encode_puback(p.pid)
                return
            e = Event(EV_MESSAGE)
            e.topic = p.topic
            e.payload = p.payload
            e.qos = p.qos
            e.retain = p.retain
            e.dup = p.dup
            e.pid = p.pid
            self._events.append(e)
            if p.qos and self.ack_on_receive:
                self._out += encode_puback(p.pid)
        elif t == _PUBACK:
            if self.outbox.ack(p.pid):
                self._sent_at.pop(p.pid, None)
                if self.puback_events:
                    e = Event(EV_PUBACK)
                    e.pid = p.pid
                    self._events.append(e)
            # else: a late duplicate ack after a retransmission; ignore
        elif t == _SUBACK or t == _UNSUBACK:
            if self._pending.pop(p.pid, None) is None:
                return self._close('protocol error: %s for unknown id %d'
                                   % (packet_name(t), p.pid), True)
            e = Event(EV_SUBACK if t == _SUBACK else EV_UNSUBACK)
            e.pid = p.pid
            e.granted = p.codes
            self._events.append(e)
        elif t == _PINGRESP:
            self._ping_sent = -1
        else:
            self._close('protocol error: unexpected ' + packet_name(t), True)

    def _on_connack(self, p, now):
        if p.return_code:
            from .mqtt_numbers import connack_reason   # imported for a refusal only
            return self._close('connection refused: ' + connack_reason(p.return_code), True,
                               p.return_code)
        self.state = CONNECTED
        e = Event(EV_CONNECTED)
        e.session_present = p.session_present
        self._events.append(e)
        subs = self._subs_new if p.session_present else self._subs
        unsubs = self._unsubs_new if p.session_present else None
        self._subs_new = []
        self._unsubs_new = []
        if unsubs:
            self._request(encode_unsubscribe, unsubs)
        if subs:
            self._request(encode_subscribe, [(f, q) for f, q in subs])
        # Replay the outbox in publish order; DUP on what went out before.
        sent_at = self._sent_at
        out = self._out
        for pid, packet in self.outbox if len(self.outbox) else ():  # (no iterator made idle)
            if pid in sent_at:
                out.append(packet[0] | 0x08)
                out += memoryview(packet)[1:]
            else:
                out += packet
            sent_at[pid] = now

    # -------------------------------------------------------------- timers

    def step(self, now):
        """Run timers: keep-alive PINGREQ, QoS 1 retransmission with DUP,
        dead-link detection (no CONNACK/PINGRESP in time -> DISCONNECTED
        with an event in take_events()). Returns the bytes to send."""
        self._now = now
        if self.state == CONNECTING:
            if now - self._connect_sent >= self.connect_timeout_ms:
                self._close('no CONNACK within %d ms' % self.connect_timeout_ms, True)
            return self.data_to_send()
        if self.state != CONNECTED:
            return b''
        if self._ping_sent >= 0 and now - self._ping_sent >= self.ping_timeout_ms:
            self._close('no PINGRESP within %d ms' % self.ping_timeout_ms, True)
            return b''
        sent_at = self._sent_at
        out = self._out
        retry = self._retry_at()       # the packets are read only when one is due
        for pid, packet in self.outbox if retry is not None and now >= retry else ():
            t = sent_at.get(pid)
            if t is not None and now - t >= self.retry_ms:
                out.append(packet[0] | 0x08)
                out += memoryview(packet)[1:]
                sent_at[pid] = now
        if out:
            self._last_sent = now
        if (self.keepalive_ms and self._ping_sent < 0
                and now - min(self._last_sent, self._last_recv) >= self.keepalive_ms):
            out += b'\xc0\x00'   # PINGREQ
            self._ping_sent = now
        return self.data_to_send()

    def next_timeout(self, now):
        """Milliseconds until step() has work (0 = now), None if idle."""
        if self.state == CONNECTING:
            deadline = self._connect_sent + self.connect_timeout_ms
        elif self.state == CONNECTED:
            if self._ping_sent >= 0:
                deadline = self._ping_sent + self.ping_timeout_ms
            elif self.keepalive_ms:
                deadline = min(self._last_sent, self._last_recv) + self.keepalive_ms
            else:
                deadline = None
            retry = self._retry_at()
            if retry is not None and (deadline is None or retry < deadline):
                deadline = retry
        else:
            return None
        if deadline is None:
            return None
        return max(0, deadline - now)

    def _retry_at(self):
        # ms when the oldest unacknowledged PUBLISH is due again, None if none; from
        # _sent_at (every sent one is there), not the outbox, which may be a file
        sent_at = self._sent_at
        first = None
        for pid in sent_at:
            t = sent_at[pid]
            if first is None or t < first:
                first = t
        return None if first is None else first + self.retry_ms
