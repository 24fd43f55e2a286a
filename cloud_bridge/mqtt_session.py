"""The bridge's MQTT 3.1.1 session on asyncio: core's sans-I/O client, no thread.

MqttSession keeps one connection to the broker (TCP or TLS) and drives
core.mqtt_client.MqttClient from an asyncio.Protocol on the event loop:

- packets are parsed where they arrive (data_received), and each PUBLISH goes
  to on_message(topic, payload, pid, generation) at once, on the loop;
- a QoS 1 message is acknowledged only when its owner calls ack(pid,
  generation) (the bridge does after its store commit); the PUBACKs of one
  loop turn go out in one socket write after the callbacks that made them;
  an ack for a message of an earlier connection is dropped (the broker sends
  that message again on the new one, and its packet id may by then name
  another message);
- the session is what the caller asks for (a fixed client id with
  clean_session off keeps the bridge's messages at the broker while it is
  away); the filters are subscribed again after every CONNACK, and those the
  broker refuses (SUBACK 0x80, e.g. its ACL) are asked for again after 1, 2, 4
  ... 30 s while the connection lasts, until granted: `ready` is set once all
  are, `failed` while one is refused;
- publish() queues QoS 1 messages in an outbox while the link is down and
  sends them after the next CONNACK; keep-alive and the CONNACK timeout run on
  a one-second timer;
- a malformed packet, a refused CONNACK or a dead link closes the connection
  (last_error says why) and it is opened again after 1, 2, 4 ... 30 s;
- a PUBLISH longer than max_packet (default 64 KiB) is never buffered: core
  skips its payload and acknowledges it, and on_oversized(topic, size) hears of
  it (MQTT 3.1.1 cannot refuse one message, and one that closed the connection
  would come back after every reconnect);
- a message its owner could not store is left unacknowledged and redeliver()
  ends the connection after the longest of those delays: the broker sends such messages again only
  on a new connection (MQTT 3.1.1), and each holds one of its in-flight slots
  meanwhile (with all of them held, it would send the bridge nothing more).
"""
import asyncio
import logging
import ssl

from ..core.mqtt import SUBACK_FAILURE, encode_puback, encode_subscribe
from ..core.mqtt_client import (MqttClient, DISCONNECTED, EV_CONNECTED, EV_DISCONNECTED,
                                EV_MESSAGE, EV_OVERSIZED, EV_SUBACK)

log = logging.getLogger(__name__)

TICK = 1.0   # seconds between runs of the client's timers
CONNECT_TIMEOUT = 15.0   # seconds for TCP and TLS to a broker (then the next try)
# The largest MQTT packet the bridge reads ([mqtt] max_packet): the CoAP side's largest
# body (coap_fast), far above any SPOT frame (a node's default limit is 1 KiB); a
# larger PUBLISH is skipped unread and acknowledged (spec 9.2, Size).
MAX_PACKET = 65536


class _Outbox:
    """Unacknowledged QoS 1 PUBLISH packets by packet id, oldest first (a dict:
    a command fan-out may have thousands in flight; core's MemoryOutbox is a
    board's short list)."""

    def __init__(self, max_messages=60000):
        self.max_messages = max_messages
        self._items = {}

    def room(self, size):
        return len(self._items) < self.max_messages

    def append(self, pid, packet):
        self._items[pid] = packet

    def ack(self, pid):
        return self._items.pop(pid, None) is not None

    def __contains__(self, pid):
        return pid in self._items

    def __iter__(self):
        return iter(list(self._items.items()))

    def __len__(self):
        return len(self._items)


class _Client(MqttClient):
    """core's client with the bridge's acknowledgements and a dict outbox."""
    ack_on_receive = False
    puback_events = False

    def withdraw(self, pid):
        """Forget QoS 1 message pid if the broker has not acknowledged it: it is not
        sent again, neither after the next CONNACK nor as a retry. True if it was held."""
        if self.outbox.ack(pid):
            self._sent_at.pop(pid, None)
            return True
        return False

    def subscribe_now(self, filters):
        """SUBSCRIBE filters on this connection (not remembered: the session
        sends them after every CONNACK itself); the packet id."""
        return self._request(encode_subscribe, filters)


class MqttSession(asyncio.Protocol):
    """One MQTT session of the bridge. See the module docstring.

    filters: [(topic filter, qos)] subscribed after every CONNACK.
    on_message(topic, payload, pid, generation): a PUBLISH (pid 0 for QoS 0).
    on_ready(): every filter is granted on this connection.
    on_oversized(topic, size): a PUBLISH over max_packet was dropped (and acknowledged);
    topic is None when the topic alone was over it.
    """

    def __init__(self, host, port, client_id, filters, on_message, ssl_context=None,
                 username=None, password=None, keepalive=30, clean_session=False,
                 reconnect_delay=(1, 30), on_ready=None, max_packet=MAX_PACKET,
                 on_oversized=None):
        self.host = host
        self.port = port
        self.ssl = ssl_context
        self.filters = list(filters)
        self.on_message = on_message
        self.on_ready = on_ready
        self.on_oversized = on_oversized
        self.max_packet = max_packet
        self.reconnect_delay = reconnect_delay
        self.client = _Client(client_id, keepalive=keepalive, clean_session=clean_session,
                              username=username, password=password, outbox=_Outbox(),
                              retry_ms=60000, max_packet=max_packet)
        self.loop = None
        self.transport = None
        self.generation = 0        # counts connections; an ack names the one it is for
        self.connections = 0       # CONNACKs received
        self.last_error = None     # why the last connection ended
        self.ready = asyncio.Event()     # subscribed on the current connection
        self.failed = asyncio.Event()    # the last attempt or connection ended in an error
        self._acks = bytearray()   # PUBACKs of this loop turn
        self._flush_due = False
        self._timer = None
        self._stopping = False
        self._delay = None         # the last wait before reconnecting; None after a CONNACK
        self._sub_pid = None       # the SUBSCRIBE waiting for its SUBACK
        self._sub_filters = ()     # what it asked for
        self._sub_delay = None     # the last wait before asking again for refused filters
        self._resubscribe = None   # the timer doing that
        self._connecting = None
        self._lost = None          # stop() waits on it for the socket to close
        self._redeliver = None     # the timer ending this connection (redeliver())

    # ------------------------------------------------------------ lifecycle

    def start(self):
        """Connect in the background; reconnects by itself until stop()."""
        self.loop = asyncio.get_running_loop()
        self._stopping = False
        self._connecting = asyncio.ensure_future(self._connect())
        return self

    @property
    def connected(self):
        return self.transport is not None and self.client.state != DISCONNECTED

    async def stop(self):
        """A clean DISCONNECT (the broker keeps the session), no reconnect."""
        self._stopping = True
        if self._connecting is not None:
            self._connecting.cancel()
        self._cancel_timers()
        transport = self.transport
        if transport is not None:
            self._flush()
            transport.write(self.client.disconnect(self._now()))
            self._lost = self.loop.create_future()
            transport.close()   # the DISCONNECT goes out before the socket closes
            try:
                await asyncio.wait_for(self._lost, 2)
            except asyncio.TimeoutError:
                transport.abort()

    def _now(self):
        return int(self.loop.time() * 1000)

    async def _connect(self):
        while not self._stopping:
            try:
                await asyncio.wait_for(self.loop.create_connection(
                    lambda: self, self.host, self.port, ssl=self.ssl,
                    server_hostname=self.host if self.ssl is not None else None),
                    CONNECT_TIMEOUT)
                return
            except (OSError, ssl.SSLError) as e:   # TimeoutError is an OSError
                self.last_error = "connect to %s:%s failed: %s" % (self.host, self.port, e)
                self.failed.set()
                log.info("MQTT %s; again in %s s", self.last_error, self._next_delay())
            await asyncio.sleep(self._delay)

    def _backoff(self, last):
        """The wait after `last` (None: the first): 1, 2, 4 ... 30 s (reconnect_delay)."""
        first, most = self.reconnect_delay
        return first if last is None else min(last * 2, most)

    def _next_delay(self):
        """The wait before reconnecting, growing since the last CONNACK."""
        self._delay = self._backoff(self._delay)
        return self._delay

    def _reconnect_later(self):
        if not self._stopping:
            self.loop.call_later(self._next_delay(), self._restart)

    def _restart(self):
        if not self._stopping and self.transport is None:
            self._connecting = asyncio.ensure_future(self._connect())

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        self.generation += 1
        self._acks = bytearray()   # what was not sent belongs to the old connection
        transport.write(self.client.connect(self._now()))
        self._tick()

    def connection_lost(self, exc):
        self.transport = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self._cancel_timers()
        reason = "connection lost" if exc is None else "connection lost: %s" % (exc,)
        self._events(self.client.connection_lost(reason, self._now()))
        self._reconnect_later()

    def data_received(self, data):
        client = self.client
        client.take_in(data, self._now())
        if client.has_events():
            self._events(client.take_events())
        self._send_queued()

    def eof_received(self):
        return False   # close the transport: connection_lost follows

    # ------------------------------------------------------------ events

    def _events(self, events):
        on_message = self.on_message
        generation = self.generation
        for e in events:
            kind = e.kind
            if kind == EV_MESSAGE:
                try:
                    on_message(e.topic, e.payload, e.pid, generation)
                except Exception:   # one bad message must not end the session
                    log.exception("handling MQTT message on %r", e.topic)
            elif kind == EV_OVERSIZED:
                if self.on_oversized is not None:
                    self.on_oversized(e.topic, e.size)
                else:
                    log.error("MQTT message of %d bytes on %r dropped: over the limit of %d",
                              e.size, e.topic, self.max_packet)
            elif kind == EV_CONNECTED:
                self.connections += 1
                self._delay = None
                self._sub_delay = None
                # every time, session present or not: the filters may have changed
                self._subscribe(self.filters)
            elif kind == EV_SUBACK:
                if e.pid == self._sub_pid:
                    self._subscribed(e.granted)
            elif kind == EV_DISCONNECTED:
                self.ready.clear()
                if e.error:
                    self.last_error = e.reason
                    self.failed.set()
                    log.warning("MQTT link to %s:%s closed: %s", self.host, self.port, e.reason)
                if self.transport is not None:
                    self.transport.close()   # connection_lost reconnects

    def _subscribe(self, filters):
        if self.connected:
            self._sub_filters = filters
            self._sub_pid = self.client.subscribe_now(filters)

    def _subscribed(self, granted):
        """The SUBACK of _sub_filters: ready once all are granted; the refused ones asked
        for again after the next delay, on this connection."""
        asked = self._sub_filters
        self._sub_pid = None
        if len(granted) != len(asked):   # one code a filter (MQTT 3.9.3)
            return self._broken("protocol error: SUBACK with %d return codes for %d "
                                "filters" % (len(granted), len(asked)))
        refused = [f for f, code in zip(asked, granted) if code == SUBACK_FAILURE]
        if refused:
            self._sub_delay = self._backoff(self._sub_delay)
            self.last_error = "subscription refused: %s" % [f for f, _ in refused]
            log.error("MQTT %s; asked again in %s s", self.last_error, self._sub_delay)
            self.failed.set()
            self._resubscribe = self.loop.call_later(self._sub_delay, self._subscribe_again,
                                                     refused)
            return
        if self._sub_delay is not None:
            log.warning("MQTT subscription granted now: %s", [f for f, _ in asked])
        self.failed.clear()
        self.ready.set()
        if self.on_ready is not None:
            self.on_ready()

    def _subscribe_again(self, filters):
        self._resubscribe = None
        self._subscribe(filters)
        self._send_queued()

    def _send_queued(self):
        """Write what the client has queued (PUBACKs, a PUBLISH, a SUBSCRIBE)."""
        out = self.client.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)


    def _broken(self, reason):
        """End the connection for a broker's protocol error: last_error says why, and
        it is opened again after the delay."""
        self._events(self.client.connection_lost(reason, self._now()))

    def _tick(self):
        self._timer = None
        if self.transport is None:
            return
        client = self.client
        out = client.step(self._now())
        if out:
            self.transport.write(out)
        if client.has_events():
            self._events(client.take_events())
        if self.transport is not None:
            self._timer = self.loop.call_later(TICK, self._tick)

    # ------------------------------------------------------------ output

    def ack(self, pid, generation):
        """PUBACK pid (a message of connection `generation`) in this turn's one write."""
        if generation != self.generation or self.transport is None:
            return False
        self._acks += encode_puback(pid)
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush)
        return True

    def redeliver(self):
        """Have the broker send again the messages left unacknowledged (one the owner
        could not store): MQTT 3.1.1 sends them again only on a new connection, and
        until then each holds one of the broker's in-flight slots for this client. So
        this connection is ended after the longest reconnect delay (once, however many
        ask): a message the store keeps refusing costs a reconnect every 30 s, not a
        loop."""
        if self._redeliver is None and self.transport is not None:
            self._redeliver = self.loop.call_later(self.reconnect_delay[1],
                                                   self._end_for_redelivery)

    def _end_for_redelivery(self):
        self._redeliver = None
        if self.transport is not None:
            self._flush()   # what was stored meanwhile is acknowledged first
            self._broken("ended for the broker to send again what was not acknowledged")

    def _cancel_timers(self):
        """The connection's timers (keep-alive, redelivery, resubscription) cancelled:
        stopped, or the connection is gone."""
        for timer in (self._timer, self._redeliver, self._resubscribe):
            if timer is not None:
                timer.cancel()
        self._timer = self._redeliver = self._resubscribe = None

    def _flush(self):
        self._flush_due = False
        acks = self._acks
        if acks and self.transport is not None:
            self._acks = bytearray()
            self.transport.write(acks)

    def withdraw(self, pid):
        """Take back a QoS 1 message publish() queued, if the broker has not
        acknowledged it yet (e.g. a command that timed out while the link was down)."""
        return self.client.withdraw(pid)

    def publish(self, topic, payload, qos=1, retain=False):
        """Publish now, or (QoS 1) from the outbox after the next CONNACK; the
        packet id (0 for QoS 0). Raises OutboxFull."""
        client = self.client
        pid = client.publish(topic, payload, qos, retain, self._now())
        self._send_queued()
        return pid
