"""The SPOT-over-MQTT device binding against a scripted broker and a fake
clock: topics, birth and will, requests and answers, sealed frames, the
run-time signal filter, garbage. Portable: runs under CPython and MicroPython."""
from spot.core import frame as F
from spot.core.errors import OUT_OF_RANGE, NOT_AUTHORISED
from spot.core.mqtt import (StreamParser, encode_connack, encode_publish, encode_puback,
                            CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT)
from spot.core.mqtt_client import MemoryOutbox, CONNECTED
from spot.core.mqtt_binding import (
    MqttDevice, make_client, will_of, parse_topic, check_level, up_topic,
    down_topic, announce_topic, signal_topic, UP, DOWN, ANNOUNCE, SIGNAL_TOPIC)
from spot.core.node import Node
from spot.core.oscore import SecurityContext
from spot.core.roster import Roster, OWNER, MONITOR
from spot.core.secure_frame import seal, open_sealed
from spot.core.services import HEAT_PUMP, PRICE, WEATHER
from spot.profiles import heat_pump

DEV = "hp-1"
SECRET = bytes(range(16))
MONITOR_SECRET = bytes(range(16, 32))
SALT = b"\x9e\x7c\xa9\x22\x23\x78\x63\x40"
BRIDGE_KID = b"\x02"
MONITOR_KID = b"\x03"
FLOW_SETPOINT = 7
FLOW_TEMP = 8


def bridge_pair():
    """(device side, bridge side) contexts of one pairing."""
    return (SecurityContext(SECRET, b"\x01", BRIDGE_KID, SALT),
            SecurityContext(SECRET, BRIDGE_KID, b"\x01", SALT))


def monitor_pair():
    return (SecurityContext(MONITOR_SECRET, b"\x01", MONITOR_KID, SALT),
            SecurityContext(MONITOR_SECRET, MONITOR_KID, b"\x01", SALT))


class Rig:
    """A node behind MqttDevice and a real MqttClient; the test plays the broker."""

    def __init__(self, consumes=(), sealed=False, qos_telemetry=0, outbox=None):
        self.node = Node([heat_pump], DEV, consumes=consumes)
        self.node.set(HEAT_PUMP, FLOW_SETPOINT, 45.0)
        self.node.set(HEAT_PUMP, FLOW_TEMP, 35.2)
        self.roster = Roster()
        self.node.authorise = self.roster.authorise
        self.client = make_client(DEV, outbox=outbox)
        kw = {}
        if sealed:
            dev_ctx, self.bridge_ctx = bridge_pair()
            mon_ctx, self.monitor_ctx = monitor_pair()
            kw = {"bridge_ctx": dev_ctx, "contexts": [mon_ctx]}
            self.roster.pair(BRIDGE_KID, OWNER)
            self.roster.pair(MONITOR_KID, MONITOR)
        else:
            self.roster.pair(b"bridge", OWNER)
        self.dev = MqttDevice(self.node, self.client, DEV, qos_telemetry=qos_telemetry, **kw)
        self.broker = StreamParser()
        self.now = 5000
        self.next_pid = 1

    def connect(self, session_present=False):
        """CONNECT/CONNACK; returns the packets the device sent."""
        out = list(self.broker.feed(self.client.connect(self.now)))
        self.feed(encode_connack(session_present, 0))
        return out + self.sent()

    def lose_link(self):
        for e in self.client.connection_lost("test", self.now):
            self.dev.on_event(e, self.now)
        self.broker = StreamParser()

    def feed(self, data):
        for e in self.client.receive(data, self.now):
            self.dev.on_event(e, self.now)

    def sent(self):
        return list(self.broker.feed(self.client.data_to_send()))

    def publishes(self):
        return [p for p in self.sent() if p.type == PUBLISH]

    def deliver(self, topic, payload):
        """The broker delivers a QoS 1 PUBLISH; returns the device's PUBLISHes."""
        pid = self.next_pid
        self.next_pid += 1
        self.feed(encode_publish(topic, payload, 1, False, False, pid))
        return self.publishes()

    def step(self, advance_ms=0):
        self.now += advance_ms
        self.dev.step(self.now)
        return self.publishes()


def connected(**kw):
    rig = Rig(**kw)
    rig.connect()
    return rig


def decoded(payload):
    return F.decode(payload)


def assert_raises(exc, fn, *args):
    try:
        fn(*args)
    except exc:
        return
    raise AssertionError("%r did not raise" % (args,))


# ---------------------------------------------------------------- topics

def test_topics_follow_the_scheme():
    assert up_topic(DEV, 0x10) == "spot/v1/hp-1/10/up"
    assert down_topic(DEV, 0x04) == "spot/v1/hp-1/04/down"
    assert up_topic(DEV, 0xab, "br-7") == "spot/v1/hp-1/ab/up/br-7"
    assert announce_topic(DEV) == "spot/v1/hp-1/announce"
    assert signal_topic(PRICE) == "spot/v1/signal/05"


def test_parse_topic_reads_every_kind():
    assert parse_topic("spot/v1/hp-1/10/up") == (UP, DEV, 0x10, None)
    assert parse_topic("spot/v1/hp-1/0a/down") == (DOWN, DEV, 0x0A, None)
    assert parse_topic("spot/v1/hp-1/10/up/br-7") == (UP, DEV, 0x10, "br-7")
    assert parse_topic("spot/v1/hp-1/announce") == (ANNOUNCE, DEV, None, None)
    assert parse_topic("spot/v1/signal/06") == (SIGNAL_TOPIC, None, WEATHER, None)


def test_parse_topic_refuses_topics_outside_the_scheme():
    for t in ("spot/v2/hp-1/10/up", "spot/v1/hp-1/10", "spot/v1/hp-1/1/up",
              "spot/v1/hp-1/0A/up", "spot/v1/hp-1/1g/up", "spot/v1/hp-1/ff/up",
              "spot/v1/hp-1/10/sideways", "spot/v1/hp-1/10/up/a/b",
              "spot/v1/hp-1/10/up/", "spot/v1/signal/05/x", "spot/v1/signal/5",
              "spot/v1/hp-1/status", "spot/v1//10/up", "other/hp-1/10/up", ""):
        assert parse_topic(t) is None, t


def test_device_ids_that_would_break_topics_are_refused():
    for bad in ("", "a/b", "a+b", "a#", "$SYS", "signal", "x" * 65, "a\x00"):
        assert_raises(ValueError, check_level, bad)
    assert check_level("hp-1") == "hp-1"
    assert_raises(ValueError, MqttDevice, Node([heat_pump], "x"), make_client("x"), "a/b")


# ---------------------------------------------------------------- birth and will

def test_connect_carries_an_empty_retained_will_on_the_announce_topic():
    rig = Rig()
    connect = rig.connect()[0]
    assert connect.type == CONNECT and connect.client_id == DEV
    assert (connect.will_topic, connect.will_payload, connect.will_qos,
            connect.will_retain) == ("spot/v1/hp-1/announce", b"", 1, True)
    assert will_of(DEV) == ("spot/v1/hp-1/announce", b"", 1, True)


def test_connack_subscribes_down_and_consumed_signals_then_births():
    rig = Rig(consumes=(PRICE,))
    out = rig.connect()
    subs = [p for p in out if p.type == SUBSCRIBE]
    assert len(subs) == 1
    assert sorted(subs[0].filters) == [("spot/v1/hp-1/+/down/#", 1), ("spot/v1/signal/05", 1)]
    births = [p for p in out if p.type == PUBLISH]
    assert len(births) == 1
    b = births[0]
    assert (b.topic, b.qos, b.retain) == ("spot/v1/hp-1/announce", 1, True)
    assert b.payload == rig.node.announce()
    op, sid, mid, body = decoded(b.payload)
    assert (op, sid, body[0], body[2]) == (F.ANNOUNCE, 0, DEV, [PRICE])


def test_every_reconnect_publishes_the_birth_again():
    rig = connected()
    rig.lose_link()
    out = rig.connect()
    births = [p for p in out if p.type == PUBLISH and p.topic == "spot/v1/hp-1/announce"]
    assert [(p.retain, p.payload) for p in births][-1] == (True, rig.node.announce())
    assert rig.dev.births == 2


def test_no_birth_is_queued_while_disconnected():
    rig = Rig()
    assert rig.dev.birth(rig.now) is None
    assert len(rig.client.outbox) == 0 and rig.dev.births == 0


def test_clean_close_clears_the_retained_birth_then_disconnects():
    rig = connected()
    out = list(StreamParser().feed(rig.dev.close(rig.now)))
    assert [p.type for p in out] == [PUBLISH, DISCONNECT]
    assert (out[0].topic, out[0].payload, out[0].retain) == ("spot/v1/hp-1/announce", b"", True)


# ---------------------------------------------------------------- requests

def test_write_on_down_is_applied_and_its_result_goes_up_at_qos1():
    rig = connected()
    out = rig.deliver("spot/v1/hp-1/10/down", F.encode(F.WRITE, HEAT_PUMP, 42, {FLOW_SETPOINT: 215}))
    assert len(out) == 1
    assert (out[0].topic, out[0].qos, out[0].retain) == ("spot/v1/hp-1/10/up", 1, False)
    assert out[0].payload == F.encode(F.RESULT, HEAT_PUMP, 42)
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 21.5


def test_out_of_range_write_is_answered_with_error_and_changes_nothing():
    rig = connected()
    out = rig.deliver("spot/v1/hp-1/10/down", F.encode(F.WRITE, HEAT_PUMP, 43, {FLOW_SETPOINT: 900}))
    assert [(p.topic, p.qos) for p in out] == [("spot/v1/hp-1/10/up", 1)]
    assert decoded(out[0].payload) == (F.ERROR, HEAT_PUMP, 43, [OUT_OF_RANGE, FLOW_SETPOINT])
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_request_with_a_reply_level_is_answered_on_that_reply_level():
    rig = connected()
    out = rig.deliver("spot/v1/hp-1/10/down/br-2", F.encode(F.READ, HEAT_PUMP, 9, [FLOW_TEMP]))
    assert out[0].topic == "spot/v1/hp-1/10/up/br-2"
    assert decoded(out[0].payload) == (F.RESULT, HEAT_PUMP, 9, {FLOW_TEMP: 352})


def test_result_not_acknowledged_is_sent_again_after_reconnect():
    rig = connected()
    first = rig.deliver("spot/v1/hp-1/10/down", F.encode(F.READ, HEAT_PUMP, 11, [FLOW_TEMP]))[0]
    rig.lose_link()
    again = [p for p in rig.connect() if p.type == PUBLISH and p.topic == "spot/v1/hp-1/10/up"]
    assert len(again) == 1 and again[0].dup and again[0].payload == first.payload
    rig.feed(encode_puback(again[0].pid))
    assert again[0].pid not in [pid for pid, _ in rig.client.outbox]


def test_garbage_is_counted_and_dropped_without_an_answer():
    rig = connected()
    before = dict(rig.node.values[HEAT_PUMP])
    garbage = (b"", b"\x12", b"\x12\x10", b"\xff" * 12, b"\x00", b"\x00\x05abc",
               b"\x00\x01\x09" + b"\x00" * 20, b"\x1f\x10\x00\x01",
               F.encode(F.RESULT, HEAT_PUMP, 1), F.encode(F.NOTIFY, HEAT_PUMP, 0, [0, {}]))
    for n, payload in enumerate(garbage):
        assert rig.deliver("spot/v1/hp-1/10/down", payload) == [], payload
        assert rig.dev.dropped == n + 1
    assert rig.node.values[HEAT_PUMP] == before


def test_frame_whose_service_differs_from_its_topic_is_dropped():
    rig = connected()
    out = rig.deliver("spot/v1/hp-1/04/down", F.encode(F.WRITE, HEAT_PUMP, 5, {FLOW_SETPOINT: 215}))
    assert out == [] and rig.dev.dropped == 1
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_messages_on_foreign_topics_are_dropped():
    rig = connected()
    write = F.encode(F.WRITE, HEAT_PUMP, 5, {FLOW_SETPOINT: 215})
    for topic in ("spot/v1/hp-2/10/down", "spot/v1/hp-1/10/up", "spot/v1/hp-1/announce",
                  "spot/v1/hp-1/10/down/a/b", "elsewhere"):
        assert rig.deliver(topic, write) == [], topic
    assert rig.dev.dropped == 5
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_valid_request_of_an_unknown_service_gets_the_node_error():
    rig = connected()
    out = rig.deliver("spot/v1/hp-1/42/down", F.encode(F.READ, 0x42, 5))
    assert out[0].topic == "spot/v1/hp-1/42/up"
    assert out[0].payload == bytes.fromhex("1942000581 01".replace(" ", ""))


# ---------------------------------------------------------------- signals

def test_consumed_signal_reaches_the_node():
    rig = connected(consumes=(PRICE,))
    forecast = [1700000000, {1: [1700000000, 900, [850, 900]]}]
    assert rig.deliver("spot/v1/signal/05", F.encode(F.NOTIFY, PRICE, 0, forecast)) == []
    assert rig.node.signals[PRICE] == forecast and rig.dev.dropped == 0


def test_signal_not_consumed_is_dropped():
    rig = connected(consumes=(PRICE,))
    rig.deliver("spot/v1/signal/06", F.encode(F.NOTIFY, WEATHER, 0, [0, {1: 5}]))
    assert WEATHER not in rig.node.signals and rig.dev.dropped == 1


def test_request_published_on_a_signal_topic_is_not_executed():
    rig = connected(consumes=(PRICE,))
    rig.node.consume(HEAT_PUMP)  # even a served service: signal topics carry NOTIFY only
    rig.step()
    out = rig.deliver("spot/v1/signal/10", F.encode(F.WRITE, HEAT_PUMP, 3, {FLOW_SETPOINT: 215}))
    assert out == [] and rig.dev.dropped == 1
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_consume_at_run_time_subscribes_and_announces_it():
    rig = connected()
    rig.dev.consume(PRICE, rig.now)
    out = rig.sent()
    assert [p.filters for p in out if p.type == SUBSCRIBE] == [[("spot/v1/signal/05", 1)]]
    birth = [p for p in out if p.type == PUBLISH][0]
    assert birth.retain and decoded(birth.payload)[3][2] == [PRICE]


def test_ignore_at_run_time_unsubscribes_and_the_node_drops_the_signal():
    rig = connected(consumes=(PRICE, WEATHER))
    rig.dev.ignore(PRICE, rig.now)
    out = rig.sent()
    assert [p.filters for p in out if p.type == UNSUBSCRIBE] == [["spot/v1/signal/05"]]
    assert decoded([p for p in out if p.type == PUBLISH][0].payload)[3][2] == [WEATHER]
    rig.deliver("spot/v1/signal/05", F.encode(F.NOTIFY, PRICE, 0, [0, {3: 100}]))
    assert PRICE not in rig.node.signals and rig.dev.dropped == 1


def test_consume_called_on_the_node_directly_is_followed_at_the_next_step():
    rig = connected()
    rig.node.consume(WEATHER)
    rig.dev.step(rig.now)
    out = rig.sent()
    assert [p.filters for p in out if p.type == SUBSCRIBE] == [[("spot/v1/signal/06", 1)]]
    assert len([p for p in out if p.type == PUBLISH and p.retain]) == 1
    rig.dev.step(rig.now)
    assert rig.sent() == []  # nothing changed since


def test_filter_changes_while_offline_reach_the_broker_after_connack():
    rig = Rig()
    rig.dev.consume(PRICE, rig.now)
    subs = [p for p in rig.connect() if p.type == SUBSCRIBE]
    assert ("spot/v1/signal/05", 1) in subs[0].filters


# ---------------------------------------------------------------- notifications

def test_subscription_notifications_go_up_at_the_telemetry_qos():
    rig = connected(qos_telemetry=1)
    sub = F.encode(F.SUBSCRIBE, HEAT_PUMP, 7, {FLOW_TEMP: {1: 60}})
    assert decoded(rig.deliver("spot/v1/hp-1/10/down", sub)[0].payload)[0] == F.RESULT
    rig.node.set(HEAT_PUMP, FLOW_TEMP, 36.0)
    out = rig.step(1000)
    assert [(p.topic, p.qos) for p in out] == [("spot/v1/hp-1/10/up", 1)]
    op, sid, mid, body = decoded(out[0].payload)
    assert (op, mid, body[1]) == (F.NOTIFY, 7, {FLOW_TEMP: 360})


def test_telemetry_is_a_notify_with_message_id_zero_and_current_values():
    rig = connected()
    assert rig.dev.telemetry(HEAT_PUMP, rig.now, [FLOW_SETPOINT, FLOW_TEMP]) is True
    out = rig.publishes()
    assert [(p.topic, p.qos) for p in out] == [("spot/v1/hp-1/10/up", 0)]
    assert decoded(out[0].payload) == (F.NOTIFY, HEAT_PUMP, 0, [None, {7: 450, 8: 352}])


def test_qos0_telemetry_while_offline_is_counted_as_unsent():
    rig = Rig()
    assert rig.dev.telemetry(HEAT_PUMP, rig.now) is False
    assert rig.dev.unsent == 1


def test_qos1_telemetry_while_offline_waits_in_the_outbox():
    rig = Rig(qos_telemetry=1)
    assert rig.dev.telemetry(HEAT_PUMP, rig.now, [FLOW_TEMP]) is True
    out = [p for p in rig.connect() if p.type == PUBLISH]
    assert [p.topic for p in out] == ["spot/v1/hp-1/10/up", "spot/v1/hp-1/announce"]


def test_full_outbox_counts_the_result_as_unsent_and_keeps_running():
    rig = connected(outbox=MemoryOutbox(max_messages=1))  # the birth fills it
    out = rig.deliver("spot/v1/hp-1/10/down", F.encode(F.READ, HEAT_PUMP, 2, [FLOW_TEMP]))
    assert out == [] and rig.dev.unsent == 1
    assert rig.client.state == CONNECTED


def test_next_timeout_follows_the_node_deadline():
    rig = connected()
    assert rig.dev.next_timeout(rig.now) == 0  # the plans want a first step
    rig.step()
    assert rig.dev.next_timeout(rig.now) is None
    rig.deliver("spot/v1/hp-1/10/down", F.encode(F.SUBSCRIBE, HEAT_PUMP, 7, {FLOW_TEMP: {1: 60}}))
    t = rig.dev.next_timeout(rig.now)
    assert 59000 <= t <= 60000


# ---------------------------------------------------------------- sealed

def test_sealed_request_is_answered_sealed_for_the_requester():
    rig = connected(sealed=True)
    write = F.encode(F.WRITE, HEAT_PUMP, 42, {FLOW_SETPOINT: 215})
    out = rig.deliver("spot/v1/hp-1/10/down", seal(rig.bridge_ctx, write))
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 21.5
    assert out[0].topic == "spot/v1/hp-1/10/up" and out[0].payload[0] == 0
    assert F.encode(F.RESULT, HEAT_PUMP, 42) not in out[0].payload
    frame, ctx = open_sealed([rig.bridge_ctx], out[0].payload)
    assert frame == F.encode(F.RESULT, HEAT_PUMP, 42) and ctx is rig.bridge_ctx


def test_replayed_sealed_request_is_dropped_and_changes_nothing():
    rig = connected(sealed=True)
    first = seal(rig.bridge_ctx, F.encode(F.WRITE, HEAT_PUMP, 1, {FLOW_SETPOINT: 215}))
    rig.deliver("spot/v1/hp-1/10/down", first)
    rig.deliver("spot/v1/hp-1/10/down",
                seal(rig.bridge_ctx, F.encode(F.WRITE, HEAT_PUMP, 2, {FLOW_SETPOINT: 300})))
    assert rig.deliver("spot/v1/hp-1/10/down", first) == []
    assert rig.dev.dropped == 1 and "Replay" in rig.dev.last_drop
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 30.0


def test_plain_request_to_a_sealed_device_is_not_authorised():
    rig = connected(sealed=True)
    out = rig.deliver("spot/v1/hp-1/10/down", F.encode(F.WRITE, HEAT_PUMP, 4, {FLOW_SETPOINT: 215}))
    assert out[0].payload == F.error(HEAT_PUMP, 4, NOT_AUTHORISED)
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_monitor_may_read_but_its_write_is_not_authorised():
    rig = connected(sealed=True)
    mon = rig.monitor_ctx
    out = rig.deliver("spot/v1/hp-1/10/down", seal(mon, F.encode(F.READ, HEAT_PUMP, 1, [FLOW_TEMP])))
    assert open_sealed([mon], out[0].payload)[0] == F.encode(F.RESULT, HEAT_PUMP, 1, {8: 352})
    out = rig.deliver("spot/v1/hp-1/10/down",
                      seal(mon, F.encode(F.WRITE, HEAT_PUMP, 2, {FLOW_SETPOINT: 215})))
    assert open_sealed([mon], out[0].payload)[0] == F.error(HEAT_PUMP, 2, NOT_AUTHORISED)
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_unpaired_kid_with_a_valid_context_is_not_authorised():
    rig = connected(sealed=True)
    rig.roster.unpair(BRIDGE_KID)
    out = rig.deliver("spot/v1/hp-1/10/down",
                      seal(rig.bridge_ctx, F.encode(F.READ, HEAT_PUMP, 3, [FLOW_TEMP])))
    assert open_sealed([rig.bridge_ctx], out[0].payload)[0] == F.error(HEAT_PUMP, 3, NOT_AUTHORISED)


def test_sealed_frame_from_an_unknown_kid_or_tampered_is_dropped():
    rig = connected(sealed=True)
    stranger = SecurityContext(SECRET, b"\x07", b"\x01", SALT)
    write = F.encode(F.WRITE, HEAT_PUMP, 1, {FLOW_SETPOINT: 215})
    tampered = bytearray(seal(rig.bridge_ctx, write))
    tampered[-1] ^= 1
    assert rig.deliver("spot/v1/hp-1/10/down", seal(stranger, write)) == []
    assert rig.deliver("spot/v1/hp-1/10/down", bytes(tampered)) == []
    assert rig.dev.dropped == 2
    assert rig.node.get(HEAT_PUMP, FLOW_SETPOINT) == 45.0


def test_sealed_device_seals_telemetry_for_the_bridge():
    rig = connected(sealed=True)
    rig.dev.telemetry(HEAT_PUMP, rig.now, [FLOW_TEMP])
    out = rig.publishes()
    frame, _ = open_sealed([rig.bridge_ctx], out[0].payload)
    assert frame == F.encode(F.NOTIFY, HEAT_PUMP, 0, [None, {8: 352}])


def test_sealed_notifications_are_sealed_for_the_subscriber():
    rig = connected(sealed=True)
    mon = rig.monitor_ctx
    rig.deliver("spot/v1/hp-1/10/down", seal(mon, F.encode(F.SUBSCRIBE, HEAT_PUMP, 5, {8: {}})))
    rig.node.set(HEAT_PUMP, FLOW_TEMP, 40.0)
    out = rig.step(1000)
    assert open_sealed([mon], out[0].payload)[0] == F.encode(F.NOTIFY, HEAT_PUMP, 5, [None, {8: 400}])


def test_frame_that_cannot_be_sealed_is_counted_unsent_never_sent_plain():
    rig = connected()
    # sequence numbers guarded by a reservation that was never confirmed
    no_seq = SecurityContext(SECRET, b"\x01", BRIDGE_KID, SALT, persisted_seq=0)
    dev = MqttDevice(rig.node, rig.client, DEV, bridge_ctx=no_seq)
    rig.sent()
    assert dev.telemetry(HEAT_PUMP, rig.now, [FLOW_TEMP]) is False
    assert dev.unsent == 1 and rig.publishes() == []
