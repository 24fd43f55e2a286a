"""Sans-I/O MQTT client state machine against a scripted fake broker:
connect/will, keep-alive and dead links, QoS 1 retransmission with DUP, the
outbox across reconnects and when full, incoming QoS 1, malformed input.
Portable: runs under CPython (pytest) and MicroPython."""
from spot.core.mqtt import (
    StreamParser, encode_connack, encode_publish, encode_puback, encode_suback,
    encode_unsuback, PINGRESP_PACKET, CONNECT, PUBLISH, PUBACK, SUBSCRIBE,
    UNSUBSCRIBE, PINGREQ, DISCONNECT)
from spot.core.mqtt_client import (
    MqttClient, MemoryOutbox, OutboxFull, DISCONNECTED, CONNECTING, CONNECTED,
    EV_CONNECTED, EV_MESSAGE, EV_PUBACK, EV_SUBACK, EV_UNSUBACK, EV_DISCONNECTED,
    EV_OVERSIZED)

WILL = ('spot/dev1/status', b'offline', 1, True)


class FakeBroker:
    """Decodes what the client sends; the test scripts the replies."""

    def __init__(self):
        self.parser = StreamParser()

    def take(self, data):
        return list(self.parser.feed(data))

    def reset(self):
        self.parser = StreamParser()


def kinds(events):
    return [e.kind for e in events]


def connected_client(now=0, **kw):
    c = MqttClient('dev1', **kw)
    b = FakeBroker()
    assert b.take(c.connect(now))[0].type == CONNECT
    ev = c.receive(encode_connack(False, 0), now)
    assert kinds(ev) == [EV_CONNECTED]
    b.take(c.data_to_send())
    return c, b


# ------------------------------------------------------------ connect

def test_connect_carries_client_id_keepalive_and_will():
    c = MqttClient('dev1', keepalive=30, clean_session=False, will=WILL)
    p = FakeBroker().take(c.connect(0))[0]
    assert (p.client_id, p.keepalive, p.clean_session) == ('dev1', 30, False)
    assert (p.will_topic, p.will_payload, p.will_qos, p.will_retain) == WILL
    assert c.state == CONNECTING


def test_connack_accepted_gives_connected_event():
    c = MqttClient('dev1')
    c.connect(0)
    ev = c.receive(encode_connack(True, 0), 5)
    assert kinds(ev) == [EV_CONNECTED] and ev[0].session_present
    assert c.state == CONNECTED


def test_connack_refused_gives_disconnected_with_code():
    c = MqttClient('dev1')
    c.connect(0)
    ev = c.receive(encode_connack(False, 5), 5)
    assert kinds(ev) == [EV_DISCONNECTED]
    assert ev[0].error and ev[0].return_code == 5 and 'not authorized' in ev[0].reason
    assert c.state == DISCONNECTED


def test_no_connack_within_timeout_is_a_dead_link():
    c = MqttClient('dev1', connect_timeout_ms=2000)
    c.connect(0)
    assert c.next_timeout(500) == 1500
    assert c.step(1999) == b'' and c.state == CONNECTING
    c.step(2000)
    ev = c.take_events()
    assert kinds(ev) == [EV_DISCONNECTED] and 'CONNACK' in ev[0].reason
    assert c.state == DISCONNECTED


def test_packet_before_connack_is_a_protocol_error():
    c = MqttClient('dev1')
    c.connect(0)
    ev = c.receive(encode_publish('a', b'x'), 1)
    assert kinds(ev) == [EV_DISCONNECTED] and 'protocol error' in ev[0].reason
    assert c.state == DISCONNECTED


def test_disconnect_sends_disconnect_and_reports_clean_close():
    c, b = connected_client()
    out = c.disconnect(10)
    assert [p.type for p in b.take(out)] == [DISCONNECT]
    ev = c.take_events()
    assert kinds(ev) == [EV_DISCONNECTED] and not ev[0].error
    assert c.state == DISCONNECTED


# ------------------------------------------------------------ keep-alive

def test_pingreq_after_keepalive_of_silence():
    c, b = connected_client(keepalive=60)
    assert c.next_timeout(0) == 60000
    assert c.step(59999) == b''
    assert [p.type for p in b.take(c.step(60000))] == [PINGREQ]
    # only one PINGREQ outstanding
    assert c.step(60500) == b''


def test_pingresp_keeps_link_alive():
    c, b = connected_client(keepalive=60, ping_timeout_ms=5000)
    b.take(c.step(60000))
    assert c.receive(PINGRESP_PACKET, 60100) == []
    c.step(70000)
    assert c.state == CONNECTED
    assert c.take_events() == []


def test_missing_pingresp_is_a_dead_link():
    c, b = connected_client(keepalive=60, ping_timeout_ms=5000)
    b.take(c.step(60000))
    assert c.next_timeout(60000) == 5000
    c.step(64999)
    assert c.state == CONNECTED
    c.step(65000)
    ev = c.take_events()
    assert kinds(ev) == [EV_DISCONNECTED] and ev[0].error and 'PINGRESP' in ev[0].reason
    assert c.state == DISCONNECTED


def test_keepalive_counts_from_last_received_too():
    # the client keeps sending QoS 0 but hears nothing: it must still ping
    c, b = connected_client(keepalive=10)
    for t in range(1000, 10000, 1000):
        c.publish('a', b'x', 0, now=t)
        b.take(c.step(t))
    assert [p.type for p in b.take(c.step(10000))] == [PINGREQ]


def test_keepalive_zero_never_pings():
    c, b = connected_client(keepalive=0)
    assert c.step(10 ** 9) == b''
    assert c.next_timeout(0) is None


# ------------------------------------------------------------ publish QoS 0/1

def test_qos0_publish_goes_out_once_and_not_into_outbox():
    c, b = connected_client()
    assert c.publish('spot/dev1/tele', b'\x01', 0) == 0
    p = b.take(c.data_to_send())[0]
    assert (p.type, p.topic, p.payload, p.qos) == (PUBLISH, 'spot/dev1/tele', b'\x01', 0)
    assert len(c.outbox) == 0


def test_qos0_publish_while_disconnected_is_dropped_and_says_so():
    c = MqttClient('dev1')
    assert c.publish('a', b'x', 0) is None
    assert c.data_to_send() == b''


def test_qos1_publish_stays_in_outbox_until_puback():
    c, b = connected_client()
    pid = c.publish('a', b'x', 1, retain=True, now=10)
    p = b.take(c.data_to_send())[0]
    assert (p.qos, p.pid, p.retain, p.dup) == (1, pid, True, False)
    assert len(c.outbox) == 1
    ev = c.receive(encode_puback(pid), 20)
    assert kinds(ev) == [EV_PUBACK] and ev[0].pid == pid
    assert len(c.outbox) == 0


def test_a_client_without_puback_events_takes_the_ack_silently():
    c, b = connected_client()
    c.puback_events = False
    pid = c.publish('a', b'x', 1, now=10)
    b.take(c.data_to_send())
    c.take_in(encode_puback(pid), 20)
    assert not c.has_events() and len(c.outbox) == 0
    assert c.step(20000) == b''          # acknowledged: never sent again


def test_take_in_leaves_the_events_for_take_events():
    c, b = connected_client()
    c.take_in(encode_publish('a', b'x', 1, False, False, 7), 5)
    assert c.has_events()
    ev = c.take_events()
    assert kinds(ev) == [EV_MESSAGE] and ev[0].payload == b'x'
    assert not c.has_events()
    assert [p.type for p in b.take(c.data_to_send())] == [PUBACK]


class CountingOutbox(MemoryOutbox):
    """A MemoryOutbox (test double) counting how often its packets are read, as a
    flash outbox reads them from its file."""
    reads = 0

    def __iter__(self):
        self.reads += 1
        return MemoryOutbox.__iter__(self)


def test_timers_read_the_outbox_only_when_a_retransmission_is_due():
    box = CountingOutbox()
    c, b = connected_client(retry_ms=3000, outbox=box)
    box.reads = 0                    # (read once when the client was made)
    pid = c.publish('a', b'x', 1, now=100)
    b.take(c.data_to_send())
    for now in (200, 1000, 3099):
        assert c.step(now) == b''
        assert c.next_timeout(now) == 3100 - now
    assert box.reads == 0
    again = b.take(c.step(3100))
    assert [(p.pid, p.dup) for p in again] == [(pid, True)] and box.reads == 1


def test_unknown_puback_is_ignored():
    c, b = connected_client()
    assert c.receive(encode_puback(999), 5) == []
    assert c.state == CONNECTED


def test_qos1_retransmitted_with_dup_after_timeout():
    c, b = connected_client(retry_ms=3000)
    pid = c.publish('a', b'x', 1, now=100)
    first = b.take(c.data_to_send())[0]
    assert not first.dup
    assert c.next_timeout(100) == 3000
    assert c.step(3099) == b''
    again = b.take(c.step(3100))
    assert len(again) == 1
    assert (again[0].pid, again[0].dup, again[0].payload) == (pid, True, b'x')
    # and again one retry period later, until acknowledged
    assert len(b.take(c.step(6100))) == 1
    c.receive(encode_puback(pid), 6200)
    assert c.step(20000) == b''


def test_publish_rejects_qos2():
    c, b = connected_client()
    try:
        c.publish('a', b'x', 2)
        assert False
    except ValueError:
        pass
    assert len(c.outbox) == 0


# ------------------------------------------------------------ outbox

def test_outbox_replayed_in_order_after_reconnect_with_dup():
    c, b = connected_client()
    p1 = c.publish('t', b'1', 1, now=1)
    p2 = c.publish('t', b'2', 1, now=2)
    p3 = c.publish('t', b'3', 1, now=3)
    b.take(c.data_to_send())
    c.receive(encode_puback(p1), 4)
    ev = c.connection_lost('reset', 5)
    assert kinds(ev) == [EV_DISCONNECTED] and ev[0].error
    p4 = c.publish('t', b'4', 1, now=6)     # made while disconnected
    assert c.data_to_send() == b''
    b.reset()
    b.take(c.connect(1000))
    p5 = c.publish('t', b'5', 1, now=1001)  # made while waiting for CONNACK
    assert c.data_to_send() == b''
    c.receive(encode_connack(True, 0), 1002)
    replay = b.take(c.data_to_send())
    assert [(p.pid, p.payload, p.dup) for p in replay] == [
        (p2, b'2', True), (p3, b'3', True), (p4, b'4', False), (p5, b'5', False)]
    for p in replay:
        c.receive(encode_puback(p.pid), 1003)
    assert len(c.outbox) == 0


def test_outbox_full_raises_and_keeps_what_it_has():
    c = MqttClient('dev1', outbox=MemoryOutbox(max_messages=2))
    c.publish('t', b'1', 1)
    c.publish('t', b'2', 1)
    assert not c.outbox_room()
    try:
        c.publish('t', b'3', 1)
        assert False, 'third message silently accepted'
    except OutboxFull:
        pass
    assert [bytes(pkt)[-1:] for _, pkt in c.outbox] == [b'1', b'2']


def test_outbox_byte_cap():
    c = MqttClient('dev1', outbox=MemoryOutbox(max_messages=10, max_bytes=40))
    c.publish('t', bytes(30), 1)            # 37-byte packet
    try:
        c.publish('t', bytes(5), 1)
        assert False
    except OutboxFull:
        pass
    assert len(c.outbox) == 1


def test_outbox_has_room_again_after_puback():
    c, b = connected_client(outbox=MemoryOutbox(max_messages=1))
    pid = c.publish('t', b'1', 1)
    c.receive(encode_puback(pid), 1)
    c.publish('t', b'2', 1)
    assert len(c.outbox) == 1


def test_prefilled_outbox_goes_out_with_dup_and_ids_are_not_reused():
    # a persisted outbox handed to a fresh client after a reboot
    box = MemoryOutbox()
    box.append(1, encode_publish('t', b'old', 1, False, False, 1))
    c = MqttClient('dev1', outbox=box)
    b = FakeBroker()
    b.take(c.connect(0))
    c.receive(encode_connack(True, 0), 1)
    replay = b.take(c.data_to_send())
    assert [(p.pid, p.dup, p.payload) for p in replay] == [(1, True, b'old')]
    assert c.publish('t', b'new', 1) != 1


# ------------------------------------------------------------ incoming

def test_incoming_qos1_event_first_then_puback():
    c, b = connected_client()
    ev = c.receive(encode_publish('spot/dev1/cmd', b'\xa1', 1, False, False, 42), 5)
    assert kinds(ev) == [EV_MESSAGE]
    assert (ev[0].topic, ev[0].payload, ev[0].qos, ev[0].pid) == ('spot/dev1/cmd', b'\xa1', 1, 42)
    acks = b.take(c.data_to_send())
    assert [(p.type, p.pid) for p in acks] == [(PUBACK, 42)]


def test_incoming_qos0_is_not_acked():
    c, b = connected_client()
    ev = c.receive(encode_publish('a', b'x'), 5)
    assert kinds(ev) == [EV_MESSAGE] and ev[0].qos == 0
    assert c.data_to_send() == b''


def test_retained_message_surfaces_with_retain_flag():
    c, b = connected_client()
    ev = c.receive(encode_publish('spot/dev1/plan', b'p', 1, True, False, 3), 5)
    assert ev[0].retain


def test_incoming_duplicate_is_handed_out_with_dup():
    c, b = connected_client()
    ev = c.receive(encode_publish('a', b'x', 1, False, True, 3), 5)
    assert ev[0].dup


def test_several_packets_in_one_chunk_and_split_packets():
    c, b = connected_client()
    data = (bytes(encode_publish('a', b'1', 1, False, False, 1))
            + bytes(encode_publish('a', b'2', 1, False, False, 2)))
    ev = c.receive(data[:7], 1) + c.receive(data[7:], 2)
    assert [e.payload for e in ev] == [b'1', b'2']
    assert [p.pid for p in b.take(c.data_to_send())] == [1, 2]


def test_incoming_qos2_is_a_protocol_error():
    c, b = connected_client()
    ev = c.receive(encode_publish('a', b'x', 2, False, False, 9), 5)
    assert kinds(ev) == [EV_DISCONNECTED] and ev[0].error
    assert c.state == DISCONNECTED


# ------------------------------------------------------------ malformed

def test_malformed_input_closes_with_error_and_keeps_outbox():
    c, b = connected_client()
    pid = c.publish('t', b'1', 1)
    ev = c.receive(b'\xf0\x00garbage', 5)
    assert kinds(ev) == [EV_DISCONNECTED]
    assert ev[0].error and 'malformed' in ev[0].reason
    assert c.state == DISCONNECTED
    assert [p for p, _ in c.outbox] == [pid]
    assert c.data_to_send() == b''
    # anything after the close is ignored
    assert c.receive(encode_publish('a', b'x'), 6) == []


def test_good_packets_before_garbage_are_still_handled():
    c, b = connected_client()
    ev = c.receive(bytes(encode_publish('a', b'x')) + b'\x00\x00', 5)
    assert kinds(ev) == [EV_MESSAGE, EV_DISCONNECTED]


def test_oversized_packet_other_than_publish_closes_connection():
    c, b = connected_client(max_packet=64)
    ev = c.receive(encode_suback(1, [1] * 100)[:10], 5)
    assert kinds(ev) == [EV_DISCONNECTED] and 'exceeds' in ev[0].reason


def test_oversized_qos1_publish_is_acknowledged_and_dropped_and_the_link_stays():
    c, b = connected_client(max_packet=64)
    big = encode_publish('spot/dev1/cmd', bytes(100), 1, False, False, 42)
    ev = c.receive(big[:30], 5) + c.receive(big[30:], 6)
    assert kinds(ev) == [EV_OVERSIZED]
    assert (ev[0].topic, ev[0].qos, ev[0].pid, ev[0].size) == ('spot/dev1/cmd', 1, 42, len(big))
    assert [(p.type, p.pid) for p in b.take(c.data_to_send())] == [(PUBACK, 42)]
    assert c.state == CONNECTED and c.oversized == 1
    ev = c.receive(encode_publish('spot/dev1/cmd', b'ok', 1, False, False, 43), 7)
    assert [(e.kind, e.payload) for e in ev] == [(EV_MESSAGE, b'ok')]


def test_oversized_qos1_publish_is_acknowledged_by_a_client_that_leaves_acks_to_its_owner():
    c, b = connected_client(max_packet=64)
    c.ack_on_receive = False   # the bridge's: a message is acknowledged once stored
    ev = c.receive(encode_publish('a', bytes(100), 1, False, False, 8), 5)
    assert kinds(ev) == [EV_OVERSIZED]
    assert [(p.type, p.pid) for p in b.take(c.data_to_send())] == [(PUBACK, 8)]


def test_oversized_qos0_publish_is_dropped_without_an_ack():
    c, b = connected_client(max_packet=64)
    ev = c.receive(encode_publish('a', bytes(100)), 5)
    assert kinds(ev) == [EV_OVERSIZED] and ev[0].pid == 0
    assert c.data_to_send() == b'' and c.state == CONNECTED


def test_second_connack_is_a_protocol_error():
    c, b = connected_client()
    ev = c.receive(encode_connack(False, 0), 5)
    assert kinds(ev) == [EV_DISCONNECTED] and 'protocol error' in ev[0].reason


# ------------------------------------------------------------ subscribe

def test_subscribe_sends_and_suback_reports_granted():
    c, b = connected_client()
    pid = c.subscribe([('spot/dev1/cmd/#', 1), ('spot/all', 0)])
    p = b.take(c.data_to_send())[0]
    assert p.type == SUBSCRIBE and p.pid == pid
    assert p.filters == [('spot/dev1/cmd/#', 1), ('spot/all', 0)]
    ev = c.receive(encode_suback(pid, [1, 0x80]), 5)
    assert kinds(ev) == [EV_SUBACK] and ev[0].granted == [1, 0x80]


def test_suback_for_unknown_id_is_a_protocol_error():
    c, b = connected_client()
    ev = c.receive(encode_suback(77, [1]), 5)
    assert kinds(ev) == [EV_DISCONNECTED]


def test_subscribe_while_offline_goes_out_after_connack():
    c = MqttClient('dev1')
    assert c.subscribe([('a/+', 1)]) is None
    b = FakeBroker()
    b.take(c.connect(0))
    c.receive(encode_connack(False, 0), 1)
    p = b.take(c.data_to_send())[0]
    assert p.type == SUBSCRIBE and p.filters == [('a/+', 1)]


def test_resubscribe_after_reconnect_only_without_session():
    c, b = connected_client()
    pid = c.subscribe([('a', 1)])
    b.take(c.data_to_send())
    c.receive(encode_suback(pid, [1]), 1)
    c.connection_lost('x', 2)
    b.take(c.connect(3))
    c.receive(encode_connack(True, 0), 4)     # broker kept the session
    assert b.take(c.data_to_send()) == []
    c.connection_lost('x', 5)
    b.take(c.connect(6))
    c.receive(encode_connack(False, 0), 7)    # session lost: subscribe again
    assert [p.filters for p in b.take(c.data_to_send())] == [[('a', 1)]]


def test_unsubscribe_forgets_filter():
    c, b = connected_client()
    c.subscribe([('a', 1), ('b', 0)])
    b.take(c.data_to_send())
    pid = c.unsubscribe(['a'])
    p = b.take(c.data_to_send())[0]
    assert p.type == UNSUBSCRIBE and p.filters == ['a']
    assert kinds(c.receive(encode_unsuback(pid), 3)) == [EV_UNSUBACK]
    assert c.subscriptions() == [('b', 0)]


def test_subscribe_rejects_bad_filter_and_qos2():
    c, b = connected_client()
    for args in ([('a/#/b', 0)], [('a', 2)]):
        try:
            c.subscribe(args)
            assert False
        except ValueError:
            pass
    assert c.subscriptions() == [] and c.data_to_send() == b''
