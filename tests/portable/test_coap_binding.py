"""The CoAP mapping on the device (spec 9.1): discovery, REST view by name and id,
error codes, Observe with LwM2M attributes, the bus resource and the registration.

A real Node (heat_pump profile) behind a real sans-I/O Endpoint, datagrams built by
hand, a fake clock in integer milliseconds. Portable: plain asserts."""
from _fakes import Rand, option_values
from spot.core import cbor, coap
from spot.core import frame as F
from spot.core import errors as E
from spot.core.coap import CoapMessage
from spot.core.coap_endpoint import Endpoint
from spot.core.coap_binding import CoapDevice, CF_SPOT, coap_code
from spot.core.coap_rest import parse_query, links as rest_links, SUB_MID_TOP
from spot.core.coap_oscore import OscoreServer, OPTION_FORMAT
from spot.core.oscore import SecurityContext
from spot.core.node import Node, EV_INVOKE, EV_WRITE, FLAG_CLOCK
from spot.core.roster import Roster, MONITOR
from spot.core.services import HEAT_PUMP as HP, TIME
from spot.profiles import heat_pump

C = ('10.0.0.1', 40000)
C2 = ('10.0.0.3', 40001)
BRIDGE = ('10.0.0.9', 5683)
FLOW_SETPOINT = 7
FLOW_TEMP = 8
OUTDOOR = 11
PAUSE = 18


def device(**kw):
    node = Node([heat_pump], 'hp-1')
    node.set(HP, FLOW_TEMP, 35.2)
    node.set(HP, FLOW_SETPOINT, 21.5)
    dev = CoapDevice(node, Endpoint(rand=Rand()), **kw)
    if 'bridge_addr' not in kw:
        dev.step(0)    # the node settles its plans once
    return node, dev


class Client:
    """Builds requests with fresh message ids and decodes what comes back."""

    mids = [100]   # shared: two clients at one address never reuse a message id

    def __init__(self, dev, addr=C):
        self.dev = dev
        self.addr = addr

    @property
    def mid(self):
        return Client.mids[0]

    @mid.setter
    def mid(self, value):
        Client.mids[0] = value & 0xFFFF

    def msg(self, code, path, payload=b'', token=b'\x01', observe=None, query=None,
            cf=None, accept=None, mtype=coap.CON):
        self.mid += 1
        m = coap.set_uri(CoapMessage(mtype, code, self.mid, token), path, query)
        if observe is not None:
            m.add(coap.OBSERVE, observe)
        if cf is not None:
            m.add(coap.CONTENT_FORMAT, cf)
        if accept is not None:
            m.add(coap.ACCEPT, accept)
        m.payload = payload
        return coap.encode(m)

    def send(self, data, now=0):
        return [coap.decode(d) for a, d in self.dev.receive(data, self.addr, now)]

    def ask(self, code, path, payload=b'', now=0, **kw):
        out = self.send(self.msg(code, path, payload, **kw), now)
        assert len(out) == 1, out
        return out[0]

    def get_whole(self, path, query=None):
        """GET following Block2: (first response, whole body)."""
        first = r = self.ask(coap.GET, path, query=query)
        body = r.payload
        while r.get_block(coap.BLOCK2) is not None and r.get_block(coap.BLOCK2)[1]:
            num, _, szx = r.get_block(coap.BLOCK2)
            self.mid += 1
            m = coap.set_uri(CoapMessage(coap.CON, coap.GET, self.mid, b'\x02'), path, query)
            m.add(coap.BLOCK2, coap.encode_block(num + 1, False, szx))
            [r] = self.send(coap.encode(m))
            body += r.payload
        return first, body


def step(dev, now):
    return [(a, coap.decode(d)) for a, d in dev.step(now)]


def state(node):
    return repr((sorted((k, sorted(v.items())) for k, v in node.values.items()),
                 node.subs.subs, node.events))


# ---- discovery --------------------------------------------------------------------------

def test_well_known_core_lists_the_bus_first_with_the_spot_content_format():
    _, dev = device()
    r = Client(dev).ask(coap.GET, '.well-known/core', query=['rt=spot.bus'])
    assert r.code == coap.CONTENT
    assert r.get_uint(coap.CONTENT_FORMAT) == coap.CF_LINK_FORMAT
    assert r.payload == b'</s>;rt="spot.bus";ct=65000'


def test_well_known_core_links_each_object_by_name_with_type_and_obs_when_readable():
    _, dev = device()
    r, body = Client(dev).get_whole('.well-known/core', query=['href=/heat_pump/*'])
    assert r.get(coap.BLOCK2) is not None     # over 1024 bytes: block-wise
    links = body.decode().split(',')
    assert len(links) == len(heat_pump.OBJECTS)
    assert '</heat_pump/flow_setpoint>;rt="spot.analog";ct=60;obs' in links
    assert '</heat_pump/sg_ready>;rt="spot.enum";ct=60;obs' in links
    assert '</heat_pump/pause>;rt="spot.analog";ct=60' in links   # invoke only: no obs


def test_well_known_core_whole_document_covers_every_service():
    _, dev = device()
    links = [t for _, _, t in rest_links(dev.binding)]
    assert links[0].startswith('</s>')
    assert '</time/unix_time>;rt="spot.time";ct=60;obs' in links
    assert '</plans/push>;rt="spot.plan";ct=60' in links
    assert len(links) == 1 + sum(len(s.rows) for s in dev.node.services.values())


# ---- REST view ---------------------------------------------------------------------------

def test_get_by_name_returns_the_cbor_wire_value():
    _, dev = device()
    r = Client(dev).ask(coap.GET, 'heat_pump/flow_temp')
    assert (r.code, r.get_uint(coap.CONTENT_FORMAT)) == (coap.CONTENT, coap.CF_CBOR)
    assert cbor.loads(r.payload) == 352


def test_get_by_decimal_ids_is_the_same_resource():
    _, dev = device()
    cl = Client(dev)
    assert cl.ask(coap.GET, '16/8').payload == cl.ask(coap.GET, 'heat_pump/flow_temp').payload
    assert cbor.loads(cl.ask(coap.GET, 'heat_pump/7').payload) == 215


def test_get_service_returns_every_readable_object_by_id():
    _, dev = device()
    body = cbor.loads(Client(dev).ask(coap.GET, 'heat_pump').payload)
    assert body[FLOW_TEMP] == 352 and body[FLOW_SETPOINT] == 215
    assert PAUSE not in body


def test_put_writes_through_the_node():
    node, dev = device()
    r = Client(dev).ask(coap.PUT, 'heat_pump/flow_setpoint', cbor.dumps(455), cf=60)
    assert r.code == coap.CHANGED and r.payload == b''
    assert node.get(HP, FLOW_SETPOINT) == 45.5


def test_put_out_of_range_is_4_00_with_diagnostic_and_changes_nothing():
    node, dev = device()
    before = state(node)
    r = Client(dev).ask(coap.PUT, 'heat_pump/flow_setpoint', cbor.dumps(900))
    assert r.code == coap.BAD_REQUEST
    assert r.payload == b'out-of-range flow_setpoint'
    assert state(node) == before


def test_put_to_read_only_object_is_4_05():
    node, dev = device()
    before = state(node)
    r = Client(dev).ask(coap.PUT, 'heat_pump/flow_temp', cbor.dumps(200))
    assert (r.code, r.payload) == (coap.METHOD_NOT_ALLOWED, b'read-only flow_temp')
    assert state(node) == before


def test_put_of_wrong_type_is_4_00_wrong_type():
    _, dev = device()
    r = Client(dev).ask(coap.PUT, '16/7', b'\xf5')
    assert (r.code, r.payload) == (coap.BAD_REQUEST, b'wrong-type flow_setpoint')


def test_put_of_bad_cbor_is_4_00_malformed_and_changes_nothing():
    node, dev = device()
    before = state(node)
    for payload in (b'\x19\x01', b'\xff', b'\x1c'):
        r = Client(dev).ask(coap.PUT, '16/7', payload)
        assert r.code == coap.BAD_REQUEST and r.payload.startswith(b'malformed'), r.payload
    assert state(node) == before


def test_put_without_value_is_4_00():
    _, dev = device()
    assert Client(dev).ask(coap.PUT, '16/7').code == coap.BAD_REQUEST


def test_put_in_another_content_format_is_4_15():
    _, dev = device()
    r = Client(dev).ask(coap.PUT, '16/7', b'21.5', cf=coap.CF_TEXT)
    assert r.code == coap.UNSUPPORTED_CONTENT_FORMAT


def test_get_accepting_only_json_is_4_06():
    _, dev = device()
    assert Client(dev).ask(coap.GET, '16/8', accept=coap.CF_JSON).code == coap.NOT_ACCEPTABLE


def test_unknown_names_and_ids_are_4_04():
    _, dev = device()
    cl = Client(dev)
    assert cl.ask(coap.GET, 'toaster/flow_temp').payload == b'unknown-service toaster'
    assert cl.ask(coap.GET, 'heat_pump/nope').payload == b'unknown-object nope'
    r = cl.ask(coap.GET, '66/1')          # answered by the node: unknown-service
    assert (r.code, r.payload) == (coap.NOT_FOUND, b'unknown-service')
    assert cl.ask(coap.GET, '16/99').code == coap.NOT_FOUND
    assert cl.ask(coap.GET, '999/1').code == coap.NOT_FOUND
    assert cl.ask(coap.GET, 'heat_pump/flow_temp/extra').code == coap.NOT_FOUND


def test_post_invokes_the_action_with_the_cbor_argument():
    node, dev = device()
    node.pop_events()
    r = Client(dev).ask(coap.POST, 'heat_pump/pause', cbor.dumps(3600))
    assert r.code == coap.CHANGED
    assert node.pop_events() == [(EV_INVOKE, HP, PAUSE, 3600)]


def test_get_of_an_invoke_only_object_is_4_05():
    _, dev = device()
    assert Client(dev).ask(coap.GET, 'heat_pump/pause').code == coap.METHOD_NOT_ALLOWED


def test_delete_is_4_05():
    _, dev = device()
    assert Client(dev).ask(coap.DELETE, '16/7').code == coap.METHOD_NOT_ALLOWED


def test_error_codes_follow_spec_section_8():
    assert coap_code(E.UNKNOWN_SERVICE) == coap.NOT_FOUND
    assert coap_code(E.UNKNOWN_OBJECT) == coap.NOT_FOUND
    assert coap_code(E.READ_ONLY) == coap.METHOD_NOT_ALLOWED
    assert coap_code(E.OUT_OF_RANGE) == coap.BAD_REQUEST
    assert coap_code(E.WRONG_TYPE) == coap.BAD_REQUEST
    assert coap_code(E.NOT_AUTHORISED) == coap.UNAUTHORIZED
    assert coap_code(E.TOO_LARGE) == coap.REQUEST_ENTITY_TOO_LARGE
    assert coap_code(E.BUSY) == coap.SERVICE_UNAVAILABLE
    assert coap_code(E.MALFORMED) == coap.BAD_REQUEST
    assert coap_code(E.UNSUPPORTED) == coap.METHOD_NOT_ALLOWED


def test_error_codes_outside_spec_section_8_are_4_00():
    for code in (0, 11, 255, -1, None, "busy"):
        assert coap_code(code) == coap.BAD_REQUEST


def test_roster_applies_to_rest_requests():
    node, dev = device()
    roster = Roster()
    roster.pair(C, MONITOR)
    node.authorise = roster.authorise
    assert Client(dev).ask(coap.GET, '16/8').code == coap.CONTENT
    r = Client(dev).ask(coap.PUT, '16/7', cbor.dumps(300))
    assert (r.code, r.payload) == (coap.UNAUTHORIZED, b'not-authorised')
    assert Client(dev, C2).ask(coap.GET, '16/8').code == coap.UNAUTHORIZED
    assert node.get(HP, FLOW_SETPOINT) == 21.5


# ---- Observe -----------------------------------------------------------------------------

def test_query_attributes_become_subscribe_attributes():
    assert parse_query(['pmin=10', 'pmax=60', 'st=5', 'gt=30.5', 'lt=-2', 'x=1', 'obs']) == {
        0: 10, 1: 60, 2: 5, 3: 30.5, 4: -2}


def test_bad_query_attributes_are_refused():
    for q in ('pmin=-1', 'pmax=1.5', 'st=abc', 'gt=nan', 'pmin='):
        try:
            parse_query([q])
        except E.SpotError as e:
            assert e.code == E.MALFORMED
            continue
        raise AssertionError(q)


def test_observe_registers_a_subscription_with_the_query_attributes():
    node, dev = device()
    r = Client(dev).ask(coap.GET, 'heat_pump/flow_temp', observe=0, token=b'\x0b',
                        query=['pmin=10', 'pmax=60', 'st=5'])
    assert r.code == coap.CONTENT and r.get(coap.OBSERVE) is not None
    assert cbor.loads(r.payload) == 352
    [(peer, sid, mid, table)] = node.subs.subs
    assert (peer, sid, mid) == (C, HP, SUB_MID_TOP)
    assert table[FLOW_TEMP][:5] == [10, 60, 5, None, None]


def test_notifications_respect_pmin_then_carry_the_new_value():
    node, dev = device()
    Client(dev).ask(coap.GET, 'heat_pump/flow_temp', observe=0, token=b'\x0b',
                    query=['pmin=10'])
    node.set(HP, FLOW_TEMP, 36.0)
    assert dev.next_timeout(3000) == 7000
    assert step(dev, 3000) == []
    [(addr, n)] = step(dev, 10000)
    assert addr == C and n.token == b'\x0b' and n.code == coap.CONTENT
    assert n.get(coap.OBSERVE) is not None and cbor.loads(n.payload) == 360


def test_pmax_notifies_without_a_change():
    _, dev = device()
    Client(dev).ask(coap.GET, 'heat_pump/flow_temp', observe=0, query=['pmax=60'])
    assert dev.next_timeout(0) == 60000
    assert step(dev, 59000) == []
    [(_, n)] = step(dev, 60000)
    assert cbor.loads(n.payload) == 352


def test_step_attribute_filters_small_changes():
    node, dev = device()
    Client(dev).ask(coap.GET, 'heat_pump/flow_temp', observe=0, query=['st=5'])
    node.set(HP, FLOW_TEMP, 35.5)
    assert step(dev, 1000) == []
    node.set(HP, FLOW_TEMP, 35.8)
    [(_, n)] = step(dev, 2000)
    assert cbor.loads(n.payload) == 358


def test_a_write_over_coap_notifies_the_observer_of_that_object():
    node, dev = device()
    Client(dev, C2).ask(coap.GET, '16/7', observe=0, token=b'\x22')
    Client(dev).ask(coap.PUT, '16/7', cbor.dumps(300), now=5000)
    [(addr, n)] = step(dev, 5000)
    assert addr == C2 and cbor.loads(n.payload) == 300


def test_bad_attributes_refuse_the_observation():
    node, dev = device()
    r = Client(dev).ask(coap.GET, '16/8', observe=0, query=['pmin=ten'])
    assert (r.code, r.payload) == (coap.BAD_REQUEST, b'malformed pmin')
    assert node.subs.subs == [] and len(dev.ep.observers) == 0


def test_pmax_below_pmin_is_refused_by_the_node():
    node, dev = device()
    r = Client(dev).ask(coap.GET, '16/8', observe=0, query=['pmin=60', 'pmax=10'])
    assert r.code == coap.BAD_REQUEST and node.subs.subs == []


def test_observe_of_a_non_readable_object_is_4_05_and_registers_nothing():
    node, dev = device()
    r = Client(dev).ask(coap.GET, 'heat_pump/pause', observe=0)
    assert r.code == coap.METHOD_NOT_ALLOWED and r.get(coap.OBSERVE) is None
    assert node.subs.subs == [] and len(dev.ep.observers) == 0


def test_non_observable_resources_answer_without_observe():
    _, dev = device()
    cl = Client(dev)
    assert cl.ask(coap.GET, '.well-known/core', observe=0).get(coap.OBSERVE) is None
    assert cl.ask(coap.GET, 'heat_pump', observe=0).get(coap.OBSERVE) is None
    assert len(dev.ep.observers) == 0


def test_reset_to_a_notification_ends_the_subscription():
    node, dev = device()
    Client(dev).ask(coap.GET, '16/8', observe=0, query=['pmax=5'])
    [(_, n)] = step(dev, 5000)
    assert len(node.subs.subs) == 1
    dev.receive(coap.encode_message(coap.RST, coap.EMPTY, n.mid), C, 5100)
    assert node.subs.subs == [] and dev.binding.observations == {}
    assert step(dev, 20000) == []


def test_observe_1_deregisters_and_answers_the_value():
    node, dev = device()
    cl = Client(dev)
    cl.ask(coap.GET, '16/8', observe=0, token=b'\x31')
    r = cl.ask(coap.GET, '16/8', observe=1, token=b'\x31')
    assert r.code == coap.CONTENT and r.get(coap.OBSERVE) is None
    assert node.subs.subs == [] and len(dev.ep.observers) == 0


def test_two_tokens_observe_one_resource_independently():
    node, dev = device()
    cl = Client(dev)
    cl.ask(coap.GET, '16/8', observe=0, token=b'\x41', query=['pmax=10'])
    cl.ask(coap.GET, '16/8', observe=0, token=b'\x42', query=['pmax=20'])
    assert len(node.subs.subs) == 2 and len(dev.ep.observers) == 2
    assert [n.token for _, n in step(dev, 10000)] == [b'\x41']
    assert sorted(n.token for _, n in step(dev, 20000)) == [b'\x41', b'\x42']


def test_renewing_with_the_same_token_keeps_one_subscription():
    node, dev = device()
    cl = Client(dev)
    cl.ask(coap.GET, '16/8', observe=0, token=b'\x51', query=['pmax=10'])
    cl.ask(coap.GET, '16/8', observe=0, token=b'\x51', query=['pmax=30'])
    [sub] = node.subs.subs
    assert sub[3][FLOW_TEMP][1] == 30 and len(dev.ep.observers) == 1


def test_observation_fails_cleanly_when_the_endpoint_has_no_room():
    node = Node([heat_pump], 'hp-1')
    dev = CoapDevice(node, Endpoint(rand=Rand(), max_observers=1))
    cl = Client(dev)
    cl.ask(coap.GET, '16/8', observe=0, token=b'\x61')
    r = cl.ask(coap.GET, '16/8', observe=0, token=b'\x62')
    assert r.code == coap.CONTENT and r.get(coap.OBSERVE) is None
    assert len(node.subs.subs) == 1      # the second subscription was withdrawn


# ---- the bus resource ----------------------------------------------------------------------

def test_bus_post_returns_the_reply_frame():
    _, dev = device()
    r = Client(dev).ask(coap.POST, 's', F.encode(F.READ, HP, 1, [7, 8]), cf=CF_SPOT)
    assert (r.code, r.get_uint(coap.CONTENT_FORMAT)) == (coap.CHANGED, CF_SPOT)
    assert r.payload == bytes.fromhex('18100001a20718d7081901 60'.replace(' ', ''))


def test_bus_error_frame_travels_with_the_mapped_code():
    node, dev = device()
    before = state(node)
    r = Client(dev).ask(coap.POST, 's', bytes.fromhex('1210002ba1071903 84'.replace(' ', '')))
    assert r.code == coap.BAD_REQUEST
    assert r.payload == bytes.fromhex('1910002b820407')
    assert state(node) == before


def test_bus_frame_the_node_drops_gets_2_04_without_payload():
    _, dev = device()
    for frame in (b'\x12\x10', b'\x1f\x10\x00\x01', F.encode(F.NOTIFY, HP, 0, [0, {}])):
        r = Client(dev).ask(coap.POST, 's', frame)
        assert (r.code, r.payload) == (coap.CHANGED, b'')


def test_bus_refuses_empty_payload_and_other_formats():
    _, dev = device()
    cl = Client(dev)
    assert cl.ask(coap.POST, 's').code == coap.BAD_REQUEST
    assert cl.ask(coap.POST, 's', b'\x11\x10\x00\x01', cf=60).code == \
        coap.UNSUPPORTED_CONTENT_FORMAT
    assert cl.ask(coap.GET, 's').code == coap.METHOD_NOT_ALLOWED


def test_bus_subscribe_over_post_is_refused_with_unsupported():
    node, dev = device()
    r = Client(dev).ask(coap.POST, 's', F.encode(F.SUBSCRIBE, HP, 7, {8: None}))
    assert r.code == coap.METHOD_NOT_ALLOWED
    assert F.decode(r.payload) == (F.ERROR, HP, 7, [E.UNSUPPORTED,
                                                    'SUBSCRIBE needs FETCH with Observe'])
    assert node.subs.subs == []


def test_bus_fetch_observe_subscribes_and_notifications_are_notify_frames():
    node, dev = device()
    sub = F.encode(F.SUBSCRIBE, HP, 7, {8: {0: 10}})
    r = Client(dev).ask(coap.FETCH, 's', sub, observe=0, token=b'\x71', cf=CF_SPOT)
    assert r.code == coap.CONTENT and r.get(coap.OBSERVE) is not None
    assert F.decode(r.payload) == (F.RESULT, HP, 7, {8: 352})
    assert node.subs.subs[0][:3] == [C, HP, 7]
    node.set(HP, FLOW_TEMP, 35.6)
    [(addr, n)] = step(dev, 10000)
    assert n.token == b'\x71' and n.get_uint(coap.CONTENT_FORMAT) == CF_SPOT
    assert F.decode(n.payload) == (F.NOTIFY, HP, 7, [None, {8: 356}])


def test_two_bus_subscriptions_from_one_controller_both_notify():
    node, dev = device()
    cl = Client(dev)
    cl.ask(coap.FETCH, 's', F.encode(F.SUBSCRIBE, HP, 1, {8: {1: 10}}), observe=0,
           token=b'\x81')
    cl.ask(coap.FETCH, 's', F.encode(F.SUBSCRIBE, HP, 2, {11: {1: 10}}), observe=0,
           token=b'\x82')
    notes = step(dev, 10000)
    assert sorted((n.token, F.message_id(n.payload)) for _, n in notes) == [
        (b'\x81', 1), (b'\x82', 2)]


def test_a_new_token_takes_over_the_same_bus_subscription():
    node, dev = device()
    cl = Client(dev)
    sub = F.encode(F.SUBSCRIBE, HP, 5, {8: {1: 10}})
    cl.ask(coap.FETCH, 's', sub, observe=0, token=b'\x83')
    cl.ask(coap.FETCH, 's', sub, observe=0, token=b'\x84')
    assert len(node.subs.subs) == 1 and len(dev.ep.observers) == 1
    assert [n.token for _, n in step(dev, 10000)] == [b'\x84']


def test_unacknowledged_confirmable_notification_ends_the_subscription():
    node = Node([heat_pump], 'hp-1')
    dev = CoapDevice(node, Endpoint(rand=Rand(), notify_con_every=1))
    dev.step(0)
    Client(dev).ask(coap.GET, '16/8', observe=0, query=['pmax=1'])
    [(_, n)] = step(dev, 1000)
    assert n.mtype == coap.CON
    now = 1000
    while node.subs.subs and now < 300000:   # retransmitted, then given up
        now += 500
        dev.step(now)
    assert node.subs.subs == [] and dev.binding.observations == {}
    assert now > 30000


def test_bus_subscribe_error_is_not_an_observation():
    node, dev = device()
    r = Client(dev).ask(coap.FETCH, 's', F.encode(F.SUBSCRIBE, HP, 3, {99: None}), observe=0)
    assert r.code == coap.NOT_FOUND and r.get(coap.OBSERVE) is None
    assert F.decode(r.payload)[0] == F.ERROR
    assert node.subs.subs == [] and len(dev.ep.observers) == 0


def test_unsubscribe_frame_ends_the_coap_observation_with_4_04():
    node, dev = device()
    cl = Client(dev)
    cl.ask(coap.FETCH, 's', F.encode(F.SUBSCRIBE, HP, 7, {8: None}), observe=0, token=b'\x91')
    r = cl.ask(coap.POST, 's', F.encode(F.UNSUBSCRIBE, HP, 8, 7), token=b'\x92')
    assert F.decode(r.payload) == (F.RESULT, HP, 8, None)
    [(_, n)] = step(dev, 1000)
    assert (n.token, n.code, n.get(coap.OBSERVE)) == (b'\x91', coap.NOT_FOUND, None)
    assert len(dev.ep.observers) == 0 and dev.binding.observations == {}


def test_fetch_observe_1_unsubscribes_and_answers_the_result():
    node, dev = device()
    cl = Client(dev)
    sub = F.encode(F.SUBSCRIBE, HP, 7, {8: None})
    cl.ask(coap.FETCH, 's', sub, observe=0, token=b'\xa1')
    r = cl.ask(coap.FETCH, 's', sub, observe=1, token=b'\xa1')
    assert r.code == coap.CONTENT and F.decode(r.payload) == (F.RESULT, HP, 7, None)
    assert node.subs.subs == [] and len(dev.ep.observers) == 0


def test_bus_fetch_without_observe_reads():
    _, dev = device()
    r = Client(dev).ask(coap.FETCH, 's', F.encode(F.READ, HP, 4, [8]))
    assert r.code == coap.CONTENT and F.decode(r.payload) == (F.RESULT, HP, 4, {8: 352})
    r = Client(dev).ask(coap.FETCH, 's', F.encode(F.WRITE, HP, 5, {7: 300}))
    assert r.code == coap.METHOD_NOT_ALLOWED


def test_garbage_datagrams_change_nothing():
    node, dev = device()
    before = state(node)
    for data in (b'', b'\x40', b'\xff\xff\xff\xff', b'\x40\x02\x00\x01\xff',
                 b'\x44\x02\x00\x01\x01\x02', bytes(range(40))):
        dev.receive(data, C, 0)
    assert state(node) == before


# ---- registration ----------------------------------------------------------------------------

def answer(dev, req, payload, code=coap.CHANGED, now=0):
    ack = coap.encode_message(coap.ACK, code, req.mid, req.token, (), payload)
    return dev.receive(ack, BRIDGE, now)


def test_device_posts_its_announce_to_the_bridge_bus_at_start():
    node, dev = device(bridge_addr=BRIDGE, lifetime=300)
    assert dev.next_timeout(0) == 0
    [(addr, req)] = step(dev, 0)
    assert addr == BRIDGE and (req.mtype, req.code) == (coap.CON, coap.POST)
    assert option_values(req, coap.URI_PATH) == [b's']
    assert req.get_uint(coap.CONTENT_FORMAT) == CF_SPOT
    assert req.payload == node.announce(1, BRIDGE)


def test_result_registers_and_the_update_follows_after_lifetime():
    node, dev = device(bridge_addr=BRIDGE, lifetime=300)
    [(_, req)] = step(dev, 0)
    answer(dev, req, F.encode(F.RESULT, 0, 1), now=50)
    assert dev.registered and dev.registrations == 1
    assert dev.next_timeout(50) == 300000
    [(_, again)] = step(dev, 300050)
    assert again.payload == node.announce(2, BRIDGE)


def test_refused_registration_is_retried_with_back_off():
    _, dev = device(bridge_addr=BRIDGE, lifetime=300, retry=15)
    [(_, req)] = step(dev, 0)
    answer(dev, req, F.error(0, 1, E.NOT_AUTHORISED), code=coap.UNAUTHORIZED)
    assert not dev.registered and dev.next_timeout(0) == 15000
    [(_, req)] = step(dev, 15000)
    answer(dev, req, b'', code=coap.NOT_FOUND, now=15000)
    assert dev.next_timeout(15000) == 30000


# -- the clock in the registration's RESULT (spec 3.1)

T = 1700000000


def announced_flags(req):
    return F.decode(req.payload)[3].get(3, 0)


def test_a_device_whose_clock_is_the_bridges_sets_flag_bit_1():
    _, dev = device(bridge_addr=BRIDGE)
    [(_, req)] = step(dev, 0)
    assert announced_flags(req) == FLAG_CLOCK


def test_the_time_in_the_registration_result_sets_the_clock_as_of_its_receipt():
    node, dev = device(bridge_addr=BRIDGE)
    [(_, req)] = step(dev, 0)
    answer(dev, req, F.encode(F.RESULT, 0, 1, {1: T}), now=5000)
    assert dev.registered and node.time_known and node.unix(5) == T
    assert (EV_WRITE, TIME, 1, None) in node.pop_events()    # as a WRITE of unix_time


def test_a_result_without_key_1_leaves_the_clock_to_the_bridges_write():
    node, dev = device(bridge_addr=BRIDGE)
    [(_, req)] = step(dev, 0)
    answer(dev, req, F.encode(F.RESULT, 0, 1, {0: T}), now=5000)   # a bridge before bit 1
    assert dev.registered and not node.time_known
    r = Client(dev, BRIDGE).ask(coap.POST, 's', F.encode(F.WRITE, TIME, 9, {1: T}), now=6000)
    assert r.code == coap.CHANGED and node.unix(6) == T


def test_the_time_in_the_result_never_sets_the_clock_back_before_a_notify_time():
    node, dev = device(bridge_addr=BRIDGE)
    node.set_time(T, 0)
    assert node.stamp(10) == T + 10
    [(_, req)] = step(dev, 10000)
    answer(dev, req, F.encode(F.RESULT, 0, 1, {1: T + 5}), now=10000)
    assert node.unix(10) == T + 11


def test_a_node_whose_clock_is_not_the_bridges_sets_no_flag_and_ignores_the_time():
    node, dev = device(bridge_addr=BRIDGE)
    node.set_time(T, 0)
    node.authorise = lambda peer, op, sid: not (sid == TIME and op == F.WRITE)
    [(_, req)] = step(dev, 0)
    assert announced_flags(req) == 0
    answer(dev, req, F.encode(F.RESULT, 0, 1, {1: T + 3600}), now=1000)
    assert dev.registered and node.unix(1) == T + 1


def registered_device():
    node, dev = device(bridge_addr=BRIDGE)
    [(_, req)] = step(dev, 0)
    answer(dev, req, F.encode(F.RESULT, 0, 1), now=10)
    return node, dev


def test_telemetry_the_bridge_refuses_as_out_of_range_is_dropped_and_counted():
    _, dev = registered_device()
    dev.send_telemetry([telemetry()])
    [(_, post)] = step(dev, 10)
    answer(dev, post, F.error(HP, 0, E.OUT_OF_RANGE), code=coap.BAD_REQUEST, now=20)
    assert dev.outbox == [] and dev.dropped == 1
    assert dev.registered      # the refusal is of the frame, not of the device


def test_telemetry_the_bridge_refuses_as_too_large_is_dropped_and_counted():
    _, dev = registered_device()
    dev.send_telemetry([telemetry()])
    [(_, post)] = step(dev, 10)
    answer(dev, post, F.error(HP, 0, E.TOO_LARGE), code=coap.REQUEST_ENTITY_TOO_LARGE, now=20)
    assert dev.outbox == [] and dev.dropped == 1 and dev.registered


def test_telemetry_answered_busy_stays_in_the_outbox_and_the_device_registers_again():
    _, dev = registered_device()
    dev.send_telemetry([telemetry()])
    [(_, post)] = step(dev, 10)
    answer(dev, post, F.error(HP, 0, E.BUSY), code=coap.SERVICE_UNAVAILABLE, now=20)
    assert dev.outbox == [telemetry()] and dev.dropped == 0 and not dev.registered


def test_result_for_another_message_id_is_not_a_registration():
    _, dev = device(bridge_addr=BRIDGE)
    [(_, req)] = step(dev, 0)
    answer(dev, req, F.encode(F.RESULT, 0, 99))
    assert not dev.registered


def test_unanswered_registration_times_out_and_is_retried():
    _, dev = device(bridge_addr=BRIDGE, retry=15)
    step(dev, 0)
    now = 0
    sent = 1
    while not dev._reg_due and now < 200000:
        now += 1000
        sent += len(step(dev, now))
    assert sent == 5 and not dev.registered     # 1 + 4 retransmissions, then given up
    assert dev.next_timeout(now) == 15000


def test_telemetry_waiting_for_the_registration_goes_out_as_soon_as_it_is_answered():
    _, dev = device(bridge_addr=BRIDGE)
    dev.send_telemetry([telemetry()])
    [(_, req)] = step(dev, 0)
    assert req.payload != telemetry()         # not before the bridge knows the device
    answer(dev, req, F.encode(F.RESULT, 0, 1), now=10)
    assert dev.next_timeout(10) == 0
    [(_, post)] = step(dev, 10)
    assert post.payload == telemetry()


def echo_answer(dev, req, echo, now=0):
    ack = coap.encode_message(coap.ACK, coap.UNAUTHORIZED, req.mid, req.token,
                              [(coap.ECHO, echo)])
    return dev.receive(ack, BRIDGE, now)


def test_a_4_01_with_echo_is_repeated_at_once_with_that_echo():
    node, dev = device(bridge_addr=BRIDGE, retry=15)
    [(_, req)] = step(dev, 0)
    echo_answer(dev, req, b'fresh-1', now=10)
    assert not dev.registered and dev.next_timeout(10) == 0
    [(_, again)] = step(dev, 10)
    assert again.get(coap.ECHO) == b'fresh-1' and again.payload == node.announce(2, BRIDGE)
    answer(dev, again, F.encode(F.RESULT, 0, 2), now=20)
    assert dev.registered and dev.registrations == 1


def test_a_second_echo_for_a_request_that_carried_one_backs_off():
    _, dev = device(bridge_addr=BRIDGE, retry=15)
    [(_, req)] = step(dev, 0)
    echo_answer(dev, req, b'once')
    [(_, again)] = step(dev, 0)
    echo_answer(dev, again, b'twice', now=10)
    assert not dev.registered and dev.next_timeout(10) == 15000


# -- with OSCORE: the bridge's answers are read inside the protection

DEV_KID = b'\x05'
BRIDGE_KID = b'\x00'
PROVISIONING = b'provisioning-secret-32-bytes!!!!'


def oscore_device(**kw):
    ctx = SecurityContext(PROVISIONING, DEV_KID, BRIDGE_KID)
    node, dev = device(bridge_addr=BRIDGE, oscore=OscoreServer([ctx]), bridge_kid=BRIDGE_KID,
                       **kw)
    return node, dev, SecurityContext(PROVISIONING, BRIDGE_KID, DEV_KID)


def bridge_reads(bridge, data):
    """The bridge opens a protected POST: (message, inner options, frame, binding)."""
    req = coap.decode(data, extra_options=OPTION_FORMAT)
    _, opts, payload, binding = bridge.unprotect_request(req.get(coap.OSCORE), req.payload)
    return req, opts, payload, binding


def bridge_answers(dev, bridge, req, binding, code, options=(), payload=b'', now=0):
    outer, opt, ct = bridge.protect_response(binding, code, list(options), payload)
    ack = coap.encode_message(coap.ACK, outer, req.mid, req.token, [(coap.OSCORE, opt)], ct)
    dev.receive(ack, BRIDGE, now)


def registered_oscore_device(**kw):
    node, dev, bridge = oscore_device(**kw)
    [(_, d)] = dev.step(0)
    req, _, _, binding = bridge_reads(bridge, d)
    bridge_answers(dev, bridge, req, binding, coap.CHANGED, (), F.encode(F.RESULT, 0, 1))
    assert dev.registered
    return node, dev, bridge


def telemetry():
    return F.encode(F.NOTIFY, HP, 0, [1000, {FLOW_TEMP: 352}])


def test_a_protected_echo_is_repeated_inside_the_protected_registration():
    node, dev, bridge = oscore_device()
    [(_, d)] = dev.step(0)
    req, _, _, binding = bridge_reads(bridge, d)
    bridge_answers(dev, bridge, req, binding, coap.UNAUTHORIZED, [(coap.ECHO, b'fresh-2')])
    [(_, d)] = dev.step(0)
    req, opts, frame, binding = bridge_reads(bridge, d)
    assert req.get(coap.ECHO) is None                  # not visible outside
    assert (coap.ECHO, b'fresh-2') in opts and frame == node.announce(2, BRIDGE_KID)
    bridge_answers(dev, bridge, req, binding, coap.CHANGED, (), F.encode(F.RESULT, 0, 2))
    assert dev.registered


def test_protected_telemetry_refused_inside_stays_in_the_outbox_and_the_device_registers_again():
    _, dev, bridge = registered_oscore_device(retry=15)
    dev.send_telemetry([telemetry()])
    [(_, d)] = dev.step(10)
    req, _, frame, binding = bridge_reads(bridge, d)
    assert frame == telemetry()
    refusal = F.error(HP, 0, E.NOT_AUTHORISED, 'announce first')
    bridge_answers(dev, bridge, req, binding, coap.UNAUTHORIZED, (), refusal, now=20)
    assert dev.outbox == [telemetry()] and not dev.registered   # outer 2.04 is no receipt
    assert dev.next_timeout(20) == 15000


def test_protected_telemetry_answered_echo_registers_again_at_once_then_resends():
    node, dev, bridge = registered_oscore_device()
    dev.send_telemetry([telemetry()])
    [(_, d)] = dev.step(10)
    req, _, _, binding = bridge_reads(bridge, d)
    bridge_answers(dev, bridge, req, binding, coap.UNAUTHORIZED, [(coap.ECHO, b'fresh-3')],
                   now=20)
    assert dev.outbox == [telemetry()] and dev.next_timeout(20) == 0
    [(_, d)] = dev.step(20)
    req, opts, frame, binding = bridge_reads(bridge, d)
    assert frame == node.announce(2, BRIDGE_KID) and (coap.ECHO, b'fresh-3') in opts
    bridge_answers(dev, bridge, req, binding, coap.CHANGED, (), F.encode(F.RESULT, 0, 2), now=30)
    [(_, d)] = dev.step(30)
    req, _, frame, binding = bridge_reads(bridge, d)
    assert frame == telemetry()
    bridge_answers(dev, bridge, req, binding, coap.CHANGED, now=40)
    assert dev.outbox == [] and dev.registered


def test_a_registration_without_reserved_sequence_numbers_backs_off_unsent():
    _, dev, _ = oscore_device(retry=15)
    dev.bridge_ctx.confirm_sender_seq(0)     # no number reserved: nothing can be protected
    assert dev.step(0) == [] and not dev.registered
    assert dev.next_timeout(0) == 15000      # the back-off, as when the exchanges are full


def test_protected_telemetry_without_reserved_sequence_numbers_waits_in_the_outbox():
    _, dev, _ = registered_oscore_device()
    ctx = dev.bridge_ctx
    ctx.sender_seq_limit = ctx.sender_seq    # the reserved block used up
    dev.send_telemetry([telemetry()])
    assert dev.step(10) == [] and dev.outbox == [telemetry()] and not dev.posted


def test_an_unprotected_receipt_for_protected_telemetry_is_not_a_receipt():
    _, dev, bridge = registered_oscore_device()
    dev.send_telemetry([telemetry()])
    [(_, d)] = dev.step(10)
    req = coap.decode(d, extra_options=OPTION_FORMAT)
    dev.receive(coap.encode_message(coap.ACK, coap.CHANGED, req.mid, req.token), BRIDGE, 20)
    assert dev.outbox == [telemetry()] and not dev.registered


def test_device_serves_requests_from_the_bridge_over_the_bus():
    node, dev = device(bridge_addr=BRIDGE)
    r = Client(dev, BRIDGE).ask(coap.POST, 's', F.encode(F.WRITE, HP, 42, {7: 215}))
    assert F.decode(r.payload) == (F.RESULT, HP, 42, None)
