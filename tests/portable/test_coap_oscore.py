"""OSCORE on the device (RFC 8613) between the CoAP endpoint and the SPOT binding:
protected requests and responses, the kid as the peer the roster knows, refusals
with the right codes, replays, protected Observe, and the protected registration.

Client and bridge are core.oscore contexts with the same secrets and swapped ids.
Portable: plain asserts."""
from _fakes import Rand, option_values
from spot.core import cbor, coap
from spot.core import frame as F
from spot.core.coap import CoapMessage
from spot.core.coap_endpoint import Endpoint
from spot.core.coap_binding import CoapDevice, CF_SPOT
from spot.core.coap_oscore import (OscoreServer, OPTION_FORMAT, protect_request,
                                   unprotect_response)
from spot.core.node import Node
from spot.core.oscore import SecurityContext, encode_option, OscoreError
from spot.core.roster import Roster, OWNER, MONITOR
from spot.core.services import HEAT_PUMP as HP
from spot.profiles import heat_pump

C = ('10.0.0.1', 40000)
C2 = ('10.0.0.2', 40000)
BRIDGE = ('10.0.0.9', 5683)
DEVICE_ID = b'\xd0'
OWNER_KID = b'\x01'
MONITOR_KID = b'\x02'
BRIDGE_KID = b'\x0b'
SECRETS = {OWNER_KID: b'owner-secret-016', MONITOR_KID: b'monitor-secret16',
           BRIDGE_KID: b'bridge-secret-16'}


def decode(data):
    return coap.decode(data, extra_options=OPTION_FORMAT)


def client_context(kid):
    return SecurityContext(SECRETS[kid], kid, DEVICE_ID)


def device(require=True, bridge=False):
    node = Node([heat_pump], 'hp-1')
    node.set(HP, 8, 35.2)
    node.set(HP, 7, 21.5)
    roster = Roster()
    roster.pair(OWNER_KID, OWNER)
    roster.pair(MONITOR_KID, MONITOR)
    roster.pair(BRIDGE_KID, OWNER)
    node.authorise = roster.authorise
    contexts = [SecurityContext(SECRETS[k], DEVICE_ID, k) for k in sorted(SECRETS)]
    oscore = OscoreServer(contexts, require=require)
    kw = {'bridge_addr': BRIDGE, 'bridge_kid': BRIDGE_KID} if bridge else {}
    dev = CoapDevice(node, Endpoint(rand=Rand()), oscore=oscore, **kw)
    if not bridge:
        dev.step(0)
    return node, dev


class Client:
    mids = [500]

    def __init__(self, dev, kid=OWNER_KID, addr=C):
        self.dev = dev
        self.ctx = client_context(kid) if kid is not None else None
        self.addr = addr

    def request(self, code, path, payload=b'', token=b'\x01', observe=None, query=None,
                cf=None):
        """(datagram, binding) of a protected CON request."""
        Client.mids[0] += 1
        options = [(coap.URI_PATH, s.encode()) for s in coap.split_path(path)]
        for q in query or ():
            options.append((coap.URI_QUERY, q.encode()))
        if cf is not None:
            options.append((coap.CONTENT_FORMAT, coap.encode_uint(cf)))
        if observe is not None:
            options.append((coap.OBSERVE, coap.encode_uint(observe)))
        outer, option, ct, binding = self.ctx.protect_request(code, options, payload)
        m = CoapMessage(coap.CON, outer, Client.mids[0], token, payload=ct)
        m.add(coap.OSCORE, option)
        if observe is not None:
            m.add(coap.OBSERVE, observe)
        return coap.encode(m), binding

    def send(self, data, addr=None, now=0):
        out = self.dev.receive(data, addr or self.addr, now)
        assert len(out) == 1, out
        return decode(out[0][1])

    def ask(self, code, path, payload=b'', **kw):
        """(outer response, (inner code, inner options, inner payload))."""
        data, binding = self.request(code, path, payload, **kw)
        resp = self.send(data)
        return resp, unprotect_response(self.ctx, binding, resp)

    def plain(self, code, path, payload=b''):
        Client.mids[0] += 1
        m = coap.set_uri(CoapMessage(coap.CON, code, Client.mids[0], b'\x09'), path)
        m.payload = payload
        return self.send(coap.encode(m))


def option(options, number):
    for n, v in options:
        if n == number:
            return v
    return None


def test_protected_get_answers_a_protected_2_05():
    _, dev = device()
    resp, (code, opts, payload) = Client(dev).ask(coap.GET, 'heat_pump/flow_temp')
    assert resp.code == coap.CHANGED and resp.get(coap.CONTENT_FORMAT) is None
    assert code == coap.CONTENT and cbor.loads(payload) == 352
    assert coap.decode_uint(option(opts, coap.CONTENT_FORMAT)) == coap.CF_CBOR
    assert b'heat_pump' not in coap.encode(resp)


def test_protected_put_by_the_owner_writes():
    node, dev = device()
    _, (code, _, _) = Client(dev).ask(coap.PUT, '16/7', cbor.dumps(300))
    assert code == coap.CHANGED and node.get(HP, 7) == 30.0


def test_plain_request_is_refused_with_4_01_when_oscore_is_required():
    node, dev = device()
    r = Client(dev, None).plain(coap.PUT, '16/7', cbor.dumps(300))
    assert (r.code, r.payload) == (coap.UNAUTHORIZED, b'OSCORE required')
    assert node.get(HP, 7) == 21.5 and dev.oscore.rejected == 1


def test_plain_request_passes_when_oscore_is_optional():
    _, dev = device(require=False)
    r = Client(dev, None).plain(coap.GET, '16/8')
    # the roster knows kids, not addresses: the node refuses the plain peer
    assert (r.code, r.payload) == (coap.UNAUTHORIZED, b'not-authorised')


def test_unknown_kid_is_4_01_unprotected():
    node, dev = device()
    stranger = SecurityContext(b'stranger-secret!', b'\x77', DEVICE_ID)
    outer, opt, ct, _ = stranger.protect_request(coap.GET, [(coap.URI_PATH, b's')])
    m = CoapMessage(coap.CON, outer, 1, b'\x01', payload=ct)
    m.add(coap.OSCORE, opt)
    r = Client(dev).send(coap.encode(m))
    assert (r.code, r.payload) == (coap.UNAUTHORIZED, b'Security context not found')
    assert r.get(coap.OSCORE) is None


def test_malformed_oscore_option_is_4_02():
    _, dev = device()
    m = CoapMessage(coap.CON, coap.POST, 2, b'\x01', payload=b'\x00' * 12)
    m.add(coap.OSCORE, b'\xe1\x00')
    assert Client(dev).send(coap.encode(m)).code == coap.BAD_OPTION


def test_tampered_ciphertext_is_4_00_and_changes_nothing():
    node, dev = device()
    cl = Client(dev)
    data, _ = cl.request(coap.PUT, '16/7', cbor.dumps(300))
    bad = data[:-1] + bytes((data[-1] ^ 1,))
    r = cl.send(bad)
    assert (r.code, r.payload) == (coap.BAD_REQUEST, b'Decryption failed')
    assert node.get(HP, 7) == 21.5


def test_replayed_request_from_another_address_is_4_01_and_changes_nothing():
    node, dev = device()
    cl = Client(dev)
    captured, _ = cl.request(coap.PUT, '16/7', cbor.dumps(300))
    cl.send(captured)
    cl.ask(coap.PUT, '16/7', cbor.dumps(400))
    r = cl.send(captured, C2)
    assert (r.code, r.payload) == (coap.UNAUTHORIZED, b'Replay detected')
    assert node.get(HP, 7) == 40.0


def test_retransmission_gets_the_cached_answer_without_acting_twice():
    node, dev = device()
    node.pop_events()
    cl = Client(dev)
    data, _ = cl.request(coap.POST, 'heat_pump/pause', cbor.dumps(60))
    first = dev.receive(data, C, 0)
    again = dev.receive(data, C, 1000)
    assert again == first and len(node.pop_events()) == 1


def test_monitor_may_read_but_its_put_is_not_authorised_inside_protection():
    node, dev = device()
    cl = Client(dev, MONITOR_KID)
    assert cl.ask(coap.GET, '16/7')[1][0] == coap.CONTENT
    resp, (code, _, payload) = cl.ask(coap.PUT, '16/7', cbor.dumps(300))
    assert resp.code == coap.CHANGED and resp.get(coap.OSCORE) is not None
    assert (code, payload) == (coap.UNAUTHORIZED, b'not-authorised')
    assert node.get(HP, 7) == 21.5


def test_the_kid_is_the_peer_the_node_sees():
    node, dev = device()
    Client(dev, MONITOR_KID).ask(coap.GET, '16/8', observe=0, token=b'\x33')
    assert node.subs.subs[0][0] == MONITOR_KID


def test_protected_observe_notifications_each_carry_a_new_partial_iv():
    node, dev = device()
    cl = Client(dev)
    data, binding = cl.request(coap.GET, 'heat_pump/flow_temp', observe=0, token=b'\x44')
    resp = cl.send(data)
    assert resp.code == coap.CONTENT and resp.get(coap.OBSERVE) is not None
    code, _, payload = unprotect_response(cl.ctx, binding, resp)
    assert code == coap.CONTENT and cbor.loads(payload) == 352
    pivs = [resp.get(coap.OSCORE)]
    values = []
    for i, temp in enumerate((36.0, 37.5)):
        node.set(HP, 8, temp)
        [(addr, d)] = dev.step(1000 * (i + 1))
        n = decode(d)
        assert addr == C and n.token == b'\x44' and n.get(coap.OBSERVE) is not None
        pivs.append(n.get(coap.OSCORE))
        code, _, payload = unprotect_response(cl.ctx, binding, n)
        values.append((code, cbor.loads(payload)))
    assert values == [(coap.CONTENT, 360), (coap.CONTENT, 375)]
    assert len(set(pivs)) == 3 and all(p and p[0] & 0x07 for p in pivs)


def test_two_protected_observations_from_one_address_are_kept_apart():
    node, dev = device()
    cl = Client(dev)
    d1, b1 = cl.request(coap.GET, '16/8', observe=0, token=b'\x51', query=['pmax=10'])
    d2, b2 = cl.request(coap.GET, '16/11', observe=0, token=b'\x52', query=['pmax=10'])
    cl.send(d1)
    cl.send(d2)
    node.set(HP, 11, -3.0)
    assert len(dev.ep.observers) == 2
    got = {}
    for _, d in dev.step(10000):
        n = decode(d)
        b = b1 if n.token == b'\x51' else b2
        got[n.token] = cbor.loads(unprotect_response(cl.ctx, b, n)[2])
    assert got == {b'\x51': 352, b'\x52': -30}


def test_reset_ends_a_protected_observation_and_its_subscription():
    node, dev = device()
    cl = Client(dev)
    data, _ = cl.request(coap.GET, '16/8', observe=0, token=b'\x61', query=['pmax=5'])
    cl.send(data)
    [(_, d)] = dev.step(5000)
    dev.receive(coap.encode_message(coap.RST, coap.EMPTY, decode(d).mid), C, 5100)
    assert node.subs.subs == [] and dev.oscore.observations == {}


def test_protected_bus_frame_roundtrip():
    node, dev = device()
    _, (code, opts, payload) = Client(dev).ask(
        coap.POST, 's', F.encode(F.WRITE, HP, 42, {7: 215}), cf=CF_SPOT)
    assert code == coap.CHANGED and coap.decode_uint(option(opts, coap.CONTENT_FORMAT)) == CF_SPOT
    assert F.decode(payload) == (F.RESULT, HP, 42, None)


def test_registration_is_protected_with_the_bridge_context():
    node, dev = device(bridge=True)
    bridge = SecurityContext(SECRETS[BRIDGE_KID], BRIDGE_KID, DEVICE_ID)
    [(addr, d)] = dev.step(0)
    req = decode(d)
    assert addr == BRIDGE and req.code == coap.POST and option_values(req, coap.URI_PATH) == []
    code, opts, payload, binding = bridge.unprotect_request(req.get(coap.OSCORE), req.payload)
    assert code == coap.POST and option(opts, coap.URI_PATH) == b's'
    assert coap.decode_uint(option(opts, coap.CONTENT_FORMAT)) == CF_SPOT
    assert payload == node.announce(1, BRIDGE_KID)
    outer, opt, ct = bridge.protect_response(binding, coap.CHANGED, [], F.encode(F.RESULT, 0, 1))
    ack = coap.encode_message(coap.ACK, outer, req.mid, req.token, [(coap.OSCORE, opt)], ct)
    dev.receive(ack, BRIDGE, 100)
    assert dev.registered and dev.registrations == 1


def test_unprotected_answer_to_a_protected_registration_is_not_a_registration():
    _, dev = device(bridge=True)
    [(_, d)] = dev.step(0)
    req = decode(d)
    ack = coap.encode_message(coap.ACK, coap.CHANGED, req.mid, req.token, [],
                              F.encode(F.RESULT, 0, 1))
    dev.receive(ack, BRIDGE, 100)
    assert not dev.registered


def test_client_helpers_protect_and_check_a_response():
    cl = client_context(OWNER_KID)
    server = SecurityContext(SECRETS[OWNER_KID], DEVICE_ID, OWNER_KID)
    outer, options, ct, binding = protect_request(cl, coap.GET, 'a/b', observe=0)
    assert outer == coap.FETCH and options[1] == (coap.OBSERVE, b'')
    code, inner, _, sb = server.unprotect_request(options[0][1], ct)
    assert code == coap.GET and inner[:2] == [(coap.OBSERVE, b''), (coap.URI_PATH, b'a')]
    o, opt, rct = server.protect_response(sb, coap.CONTENT, [], b'x')
    msg = CoapMessage(coap.ACK, o, 1, b'', [(coap.OSCORE, opt)], rct)
    assert unprotect_response(cl, binding, msg) == (coap.CONTENT, [], b'x')
    try:
        unprotect_response(cl, binding, CoapMessage(coap.ACK, o, 1, b'', [], rct))
    except OscoreError as e:
        assert e.code == coap.UNAUTHORIZED
    else:
        raise AssertionError('plain response accepted')
    assert encode_option(b'\x05', b'\x01') == b'\x09\x05\x01'
