"""Node behaviour: dispatch, checks, subscriptions, filters (CPython and MicroPython)."""
from spot.core import frame as F
from spot.core import errors as E
from spot.core.node import Node, EV_WRITE, EV_INVOKE, EV_SIGNAL
from spot.core.services import HEAT_PUMP as HP, PRICE, WEATHER
from spot.profiles import heat_pump

T0 = 1700000000
FLOW_SETPOINT = 7
FLOW_TEMP = 8
OUTDOOR = 11
PAUSE = 18


def make_node(**kw):
    return Node([heat_pump], "hp-1", **kw)


def ask(node, op, body, sid=HP, mid=1, now=T0, peer="ctl"):
    reply = node.receive(F.encode(op, sid, mid, body), now, peer)
    return F.decode(reply)


def state(node):
    """Everything a bad request must leave untouched."""
    return repr((sorted((k, sorted(v.items())) for k, v in node.values.items()),
                 node.subs.subs, node.plans.temp, node.plans.default, node.events))


def test_read_all_returns_every_readable_object():
    node = make_node()
    node.set(HP, FLOW_TEMP, 35.2)
    op, sid, mid, body = ask(node, F.READ, None)
    assert op == F.RESULT and mid == 1
    assert body[FLOW_TEMP] == 352
    assert PAUSE not in body  # invoke-only objects are not read


def test_write_applies_scaled_value_and_reports_event():
    node = make_node()
    op, _, _, body = ask(node, F.WRITE, {FLOW_SETPOINT: 455})
    assert op == F.RESULT and body is None
    assert node.get(HP, FLOW_SETPOINT) == 45.5
    assert node.pop_events() == [(EV_WRITE, HP, FLOW_SETPOINT, None)]


def test_write_calls_bound_setter_with_si_value():
    node = make_node()
    seen = []
    node.bind(HP, FLOW_SETPOINT, set=seen.append)
    ask(node, F.WRITE, {FLOW_SETPOINT: 300})
    assert seen == [30.0]


def test_read_uses_bound_getter():
    node = make_node()
    node.bind(HP, OUTDOOR, get=lambda: -3.26)
    _, _, _, body = ask(node, F.READ, [OUTDOOR])
    assert body == {OUTDOOR: -33}


def test_a_getter_bound_with_wire_gives_the_wire_value_unconverted():
    node = make_node()
    node.bind(HP, OUTDOOR, get=lambda: -33, wire=True)   # outdoor_temp has scale -1
    _, _, _, body = ask(node, F.READ, [OUTDOOR])
    assert body == {OUTDOOR: -33}
    assert node.get(HP, OUTDOOR) == -3.3


def test_a_setter_bound_with_wire_takes_the_wire_value():
    node = make_node()
    seen = []
    node.bind(HP, FLOW_SETPOINT, set=seen.append, wire=True)
    ask(node, F.WRITE, {FLOW_SETPOINT: 300})
    assert seen == [300] and type(seen[0]) is int


def test_bound_tells_which_objects_have_a_getter():
    node = make_node()
    node.bind(HP, OUTDOOR, get=lambda: 1.0)
    node.bind(HP, FLOW_SETPOINT, set=lambda v: None)
    assert node.bound(HP, OUTDOOR)
    assert not node.bound(HP, FLOW_SETPOINT) and not node.bound(HP, FLOW_TEMP)


def test_write_with_one_bad_value_changes_nothing():
    node = make_node()
    node.set(HP, FLOW_SETPOINT, 30.0)
    before = state(node)
    op, _, _, body = ask(node, F.WRITE, {FLOW_SETPOINT: 400, 6: 9})  # sg_ready 9 out of range
    assert op == F.ERROR and body == [E.OUT_OF_RANGE, 6]
    assert state(node) == before


def test_write_of_float_to_scaled_object_is_wrong_type():
    node = make_node()
    op, _, _, body = ask(node, F.WRITE, {FLOW_SETPOINT: 21.5})
    assert op == F.ERROR and body == [E.WRONG_TYPE, FLOW_SETPOINT]


def test_write_of_only_unknown_objects_is_unknown_object():
    node = make_node()
    op, _, _, body = ask(node, F.WRITE, {99: 1})
    assert op == F.ERROR and body == [E.UNKNOWN_OBJECT, 99]


def test_read_skips_unknown_objects():
    node = make_node()
    _, _, _, body = ask(node, F.READ, [FLOW_SETPOINT, 99])
    assert list(body) == [FLOW_SETPOINT]


def test_invoke_checks_argument_and_emits_action():
    node = make_node()
    op, _, _, _ = ask(node, F.INVOKE, [PAUSE, 3600])
    assert op == F.RESULT
    assert node.pop_events() == [(EV_INVOKE, HP, PAUSE, 3600)]
    op, _, _, body = ask(node, F.INVOKE, [PAUSE, 90000])
    assert body == [E.OUT_OF_RANGE, PAUSE]


def test_invoke_on_writable_object_is_refused():
    node = make_node()
    op, _, _, body = ask(node, F.INVOKE, [FLOW_SETPOINT, 200])
    assert op == F.ERROR and body == [E.READ_ONLY, FLOW_SETPOINT]


def test_malformed_bodies_get_malformed_error_and_change_nothing():
    node = make_node()
    before = state(node)
    for op, body in ((F.READ, 5), (F.WRITE, [1, 2]), (F.WRITE, {}), (F.INVOKE, {}),
                     (F.SUBSCRIBE, [8]), (F.UNSUBSCRIBE, "x")):
        rop, _, _, rbody = ask(node, op, body)
        assert rop == F.ERROR and rbody[0] == E.MALFORMED, (op, body)
    assert state(node) == before


def test_hostile_bytes_never_raise_and_change_nothing():
    node = make_node()
    before = state(node)
    bad = (b"", b"\x12", b"\x12\x10\x00", b"\x12\x10\x00\x01\xff", b"\x12\x10\x00\x01\x9f",
           b"\x12\x10\x00\x01\xc2\x41\x00", b"\x12\x10\x00\x01" + b"\x81" * 40,
           b"\x12\x10\x00\x01\xbb\xff\xff\xff\xff\xff\xff\xff\xff",
           b"\x12\x10\x00\x01\xa2\x07\x01\x07\x02", b"\x00\x00\x00\x00", b"\xff" * 9)
    for frame in bad:
        reply = node.receive(frame, T0, "ctl")
        if reply is not None:
            assert F.decode(reply)[0] == F.ERROR
    assert state(node) == before


def test_oversized_frame_is_too_large():
    node = make_node(max_frame=64)
    op, _, _, body = ask(node, F.WRITE, {13: 200, 200: "x" * 80})
    assert op == F.ERROR and body == [E.TOO_LARGE, 64]


def test_unauthorised_peer_is_refused_without_change():
    node = make_node()
    node.authorise = lambda peer, op, sid: peer == "owner"
    before = state(node)
    op, _, _, body = ask(node, F.WRITE, {FLOW_SETPOINT: 300}, peer="stranger")
    assert body == [E.NOT_AUTHORISED]
    assert state(node) == before
    op, _, _, _ = ask(node, F.WRITE, {FLOW_SETPOINT: 300}, peer="owner")
    assert op == F.RESULT


def test_subscribe_returns_current_values():
    node = make_node()
    node.set(HP, FLOW_TEMP, 40.0)
    op, _, mid, body = ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=7)
    assert op == F.RESULT and mid == 7 and body == {FLOW_TEMP: 400}


def test_notify_respects_pmin():
    node = make_node()
    node.set(HP, FLOW_TEMP, 40.0)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: {0: 10}}, mid=7)
    node.set(HP, FLOW_TEMP, 41.0)
    assert node.step(T0 + 5) == []
    assert node.next_deadline(T0 + 5) == 5
    out = node.step(T0 + 10)
    assert len(out) == 1
    peer, frame = out[0]
    assert peer == "ctl"
    op, sid, mid, body = F.decode(frame)
    assert (op, sid, mid) == (F.NOTIFY, HP, 7)
    assert body[1] == {FLOW_TEMP: 410}


def test_step_hands_notifications_to_emit_instead_of_a_list():
    node = make_node()
    node.set(HP, FLOW_TEMP, 40.0)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=7, peer="a")
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=8, peer="b")
    node.set(HP, FLOW_TEMP, 41.0)
    got = []
    assert node.step(T0 + 1, lambda peer, frame: got.append((peer, F.decode(frame)))) == []
    assert sorted((p, d[2], d[3][1]) for p, d in got) == [("a", 7, {FLOW_TEMP: 410}),
                                                          ("b", 8, {FLOW_TEMP: 410})]
    assert node.step(T0 + 2, got.append) == [] and len(got) == 2   # nothing due: no call


def test_notify_carries_unix_time_only_once_clock_is_set():
    node = make_node()
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=7, now=100)
    node.set(HP, FLOW_TEMP, 41.0)
    assert F.decode(node.step(101)[0][1])[3][0] is None
    ask(node, F.WRITE, {1: T0}, sid=2, now=102)  # time service: unix_time
    node.set(HP, FLOW_TEMP, 42.0)
    assert F.decode(node.step(103)[0][1])[3][0] == T0 + 1


def _notify_time(node, value, now):
    node.set(HP, FLOW_TEMP, value)
    return F.decode(node.step(now)[0][1])[3][0]


def test_a_clock_set_never_takes_notify_times_back_to_a_time_already_sent():
    node = make_node()
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=7, now=100)
    ask(node, F.WRITE, {1: T0}, sid=2, now=100)
    assert _notify_time(node, 41.0, 130) == T0 + 30
    ask(node, F.WRITE, {1: T0 + 5}, sid=2, now=131)   # 26 s back: before what was sent
    assert _notify_time(node, 42.0, 131) == T0 + 31   # the last NOTIFY's time + 1
    assert _notify_time(node, 43.0, 132) == T0 + 32


def test_a_clock_set_forward_or_more_than_a_day_back_is_taken_as_written():
    node = make_node()
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=7, now=100)
    ask(node, F.WRITE, {1: T0}, sid=2, now=100)
    assert _notify_time(node, 41.0, 101) == T0 + 1
    ask(node, F.WRITE, {1: T0 + 1}, sid=2, now=101)       # in step: the very second sent
    assert _notify_time(node, 41.5, 102) == T0 + 2
    ask(node, F.WRITE, {1: T0 + 50}, sid=2, now=102)
    assert _notify_time(node, 42.0, 102) == T0 + 50
    ask(node, F.WRITE, {1: T0 - 90000}, sid=2, now=103)   # the clock was a day wrong
    assert _notify_time(node, 43.0, 103) == T0 - 90000


def test_change_below_step_threshold_is_not_notified():
    node = make_node()
    node.set(HP, FLOW_TEMP, 40.0)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: {2: 5}}, mid=7)  # st 0.5 Cel
    node.set(HP, FLOW_TEMP, 40.4)
    assert node.step(T0 + 1) == []
    node.set(HP, FLOW_TEMP, 40.5)
    assert len(node.step(T0 + 2)) == 1


def test_crossing_gt_is_notified_even_below_step():
    node = make_node()
    node.set(HP, FLOW_TEMP, 49.9)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: {2: 50, 3: 500}}, mid=7)
    node.set(HP, FLOW_TEMP, 50.1)
    out = node.step(T0 + 1)
    assert F.decode(out[0][1])[3][1] == {FLOW_TEMP: 501}


def test_pmax_notifies_unchanged_value():
    node = make_node()
    node.set(HP, FLOW_TEMP, 40.0)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: {1: 60}}, mid=7)
    assert node.step(T0 + 59) == []
    assert len(node.step(T0 + 60)) == 1
    assert node.step(T0 + 61) == []
    assert node.next_deadline(T0 + 61) == 59


def test_unsubscribe_stops_notifications():
    node = make_node()
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=7)
    op, _, _, _ = ask(node, F.UNSUBSCRIBE, 7, mid=8)
    assert op == F.RESULT
    node.set(HP, FLOW_TEMP, 44.0)
    assert node.step(T0 + 1) == []
    op, _, _, body = ask(node, F.UNSUBSCRIBE, 7, mid=9)
    assert body[0] == E.UNKNOWN_OBJECT


def test_subscriptions_are_bounded():
    node = make_node(max_subs=2)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=1)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=2)
    op, _, _, body = ask(node, F.SUBSCRIBE, {FLOW_TEMP: None}, mid=3)
    assert body == [E.BUSY, "subscriptions full"]
    assert len(node.subs.subs) == 2


def test_frames_of_unserved_service_are_dropped_from_header():
    node = make_node()
    notify = F.encode(F.NOTIFY, WEATHER, 0, [T0, {1: 5}])
    assert node.receive(notify, T0) is None
    assert node.dropped == 1
    # the body is never decoded: garbage after a filtered header is dropped the same way
    assert node.receive(bytes([0x16, WEATHER, 0, 0, 0xFF, 0xFF]), T0) is None
    assert node.dropped == 2


def test_consumed_informational_signal_is_delivered():
    node = Node([heat_pump], "hp-1", consumes=(PRICE,))
    forecast = [T0, {1: [T0, 900, [120, 95, 80, 130]]}]
    assert node.receive(F.encode(F.NOTIFY, PRICE, 0, forecast), T0) is None
    assert node.pop_events() == [(EV_SIGNAL, PRICE, None, forecast)]
    assert node.signals[PRICE] == forecast


def test_filter_changes_at_run_time():
    node = make_node()
    frame = F.encode(F.NOTIFY, WEATHER, 0, [T0, {}])
    node.receive(frame, T0)
    assert node.pop_events() == []
    node.consume(WEATHER)
    node.receive(frame, T0)
    assert node.pop_events()[0][0] == EV_SIGNAL
    node.ignore(WEATHER)
    node.receive(frame, T0)
    assert node.pop_events() == []


def test_announce_lists_services_with_versions():
    node = Node([heat_pump], "hp-1", consumes=(PRICE,), sleepy=True)
    op, sid, mid, body = F.decode(node.announce(5))
    assert (op, sid, mid) == (F.ANNOUNCE, 0, 5)
    assert body[0] == "hp-1"
    assert [HP, 1, 0] in body[1]
    assert body[2] == [PRICE] and body[3] == 1


def test_report_sends_telemetry_nobody_subscribed_to():
    node = make_node()
    node.receive(F.encode(F.WRITE, 2, 1, {1: T0}), 0)  # clock set: unix = now + T0
    node.report(HP, {FLOW_TEMP: {0: 60, 1: 60}}, 0)
    node.set(HP, FLOW_TEMP, 40.0)
    assert node.step(30) == []
    peer, frame = node.step(60)[0]
    assert peer is None
    op, sid, mid, body = F.decode(frame)
    assert (op, sid, mid) == (F.NOTIFY, HP, 0)
    assert body == [T0 + 60, {FLOW_TEMP: 400}]


def test_pmax_zero_is_malformed():
    node = make_node()
    op, _, _, body = ask(node, F.SUBSCRIBE, {FLOW_TEMP: {0: 0, 1: 0}})
    assert op == F.ERROR and body[0] == E.MALFORMED
    assert node.subs.subs == []


def test_non_integer_object_ids_are_malformed():
    node = make_node()
    before = state(node)
    for op, body in ((F.READ, [[1]]), (F.READ, [{}]), (F.INVOKE, [[18], 5])):
        rop, _, _, rbody = ask(node, op, body)
        assert rop == F.ERROR and rbody[0] == E.MALFORMED, (op, body)
    assert state(node) == before


def test_signal_from_a_peer_not_allowed_to_write_is_dropped():
    from spot.core.roster import Roster, OWNER
    node = Node([heat_pump], "hp-1", consumes=(PRICE,))
    roster = Roster()
    roster.pair("bridge", OWNER)
    node.authorise = roster.authorise
    frame = F.encode(F.NOTIFY, PRICE, 0, [T0, {1: [T0, 900, [1, 2]]}])
    assert node.receive(frame, T0, "stranger") is None
    assert PRICE not in node.signals
    node.receive(frame, T0, "bridge")
    assert PRICE in node.signals


def test_frames_from_step_stay_whole_while_the_encode_buffer_is_reused():
    node = make_node()
    node.set(HP, FLOW_TEMP, 40.0)
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: None, OUTDOOR: None}, mid=7)
    node.set(HP, FLOW_TEMP, 41.0)
    node.set(HP, OUTDOOR, -3.5)
    [(_, first)] = node.step(T0 + 1)
    node.set(HP, FLOW_TEMP, 42.0)
    [(_, second)] = node.step(T0 + 2)
    reply = node.receive(F.encode(F.READ, HP, 9, [FLOW_TEMP]), T0 + 3, "ctl")
    assert F.decode(first)[3][1] == {FLOW_TEMP: 410, OUTDOOR: -35}
    assert F.decode(second)[3][1] == {FLOW_TEMP: 420}
    assert F.decode(reply)[3] == {FLOW_TEMP: 420}


def test_step_with_nothing_due_returns_the_shared_empty_list():
    from spot.core.node import NOTHING
    node = make_node()
    ask(node, F.SUBSCRIBE, {FLOW_TEMP: {0: 10}}, mid=7)
    assert node.step(T0 + 1) is NOTHING and NOTHING == []
