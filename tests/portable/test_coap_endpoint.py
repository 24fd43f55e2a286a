"""Sans-I/O CoAP endpoint: messaging, dedupe, separate responses, Observe and block-wise.

Fake clock (integer ms passed in) and fake random source.  Portable: plain asserts.
"""
from spot.core import coap
from spot.core.coap import CoapMessage
from spot.core.coap_endpoint import Endpoint
from spot.core.coap_server import Response
from spot.core.coap_client import (CoapBusy, EV_RESPONSE, EV_NOTIFICATION, EV_TIMEOUT, EV_RESET,
                                   EV_ERROR)

C = ('10.0.0.1', 40000)   # addresses are opaque keys for the endpoint
S = ('10.0.0.2', 5683)


class Counter:
    """Fake random: 0, step, 2*step ...  step=1001 makes every ACK timeout exactly 2000 ms."""

    def __init__(self, step=1001, start=0):
        self.value = start - step
        self.step = step

    def __call__(self):
        self.value += self.step
        return self.value & 0xFFFFFFFF


class Link:
    """Carries datagrams between endpoints by address and logs (src, dst, message)."""

    def __init__(self, **eps):
        self.eps = {C: eps.get('client'), S: eps.get('server')}
        self.log = []
        self.drop = None

    def run(self, out, src, now):
        queue = [(src, dst, data) for dst, data in out]
        while queue:
            src, dst, data = queue.pop(0)
            self.log.append((src, dst, coap.decode(data)))
            if self.drop is not None and self.drop(src, dst, data):
                continue
            for nxt, reply in self.eps[dst].receive(data, src, now):
                queue.append((dst, nxt, reply))

    def sent_by(self, src):
        return [m for s, d, m in self.log if s == src]


def pair(handler, **kw):
    server = Endpoint(handler, rand=Counter(start=5), **kw)
    client = Endpoint(rand=Counter(start=9), **kw)
    return client, server, Link(client=client, server=server)


def text_handler(text=b'hello'):
    calls = []

    def handler(req):
        calls.append(req)
        return Response(coap.CONTENT, text, coap.CF_TEXT)
    return handler, calls


def con_get(mid, path='test', token=b'\x01', extra=()):
    msg = coap.set_uri(CoapMessage(coap.CON, coap.GET, mid, token), path)
    for num, value in extra:
        msg.add(num, value)
    return coap.encode(msg)


def only(out):
    assert len(out) == 1, out
    return coap.decode(out[0][1])


# ---- server basics -------------------------------------------------------------------------

def test_con_request_gets_piggybacked_response():
    handler, calls = text_handler(b'22.3 C')
    ep = Endpoint(handler, rand=Counter())
    out = ep.receive(bytes.fromhex('40017d34bb') + b'temperature', C, 0)
    assert out == [(C, bytes.fromhex('60457d34c0ff') + b'22.3 C')]
    assert calls[0].path == ['temperature']


def test_non_request_gets_non_response_with_same_token():
    handler, _ = text_handler()
    ep = Endpoint(handler, rand=Counter())
    msg = coap.set_uri(CoapMessage(coap.NON, coap.GET, 0x10, b'\xaa\xbb'), 'test')
    resp = only(ep.receive(coap.encode(msg), C, 0))
    assert (resp.mtype, resp.code, resp.token, resp.payload) == (
        coap.NON, coap.CONTENT, b'\xaa\xbb', b'hello')
    assert resp.mid != 0x10


def test_request_object_exposes_what_a_mapping_needs():
    seen = []
    ep = Endpoint(lambda req: seen.append(req) or Response(coap.CHANGED), rand=Counter())
    msg = coap.set_uri(CoapMessage(coap.CON, coap.PUT, 0x11, b'\x07'), '/7/3', ['a=1', 'b'])
    msg.add(coap.CONTENT_FORMAT, coap.CF_CBOR).add(coap.ACCEPT, coap.CF_CBOR)
    msg.payload = b'\xa1\x01\x02'
    assert only(ep.receive(coap.encode(msg), C, 0)).code == coap.CHANGED
    req = seen[0]
    assert req.path == ['7', '3'] and req.query == ['a=1', 'b']
    assert req.code == coap.PUT and req.payload == b'\xa1\x01\x02'
    assert req.content_format == coap.CF_CBOR and req.accept == coap.CF_CBOR
    assert req.observe is None and req.addr == C and req.token == b'\x07'
    assert req.confirmable and req.uri_key() == '7/3?a=1&b'


def test_well_known_core_path_segments():
    seen = []
    ep = Endpoint(lambda req: seen.append(req.path) or Response(
        coap.CONTENT, b'</7/3>', coap.CF_LINK_FORMAT), rand=Counter())
    resp = only(ep.receive(con_get(1, '/.well-known/core'), C, 0))
    assert seen == [['.well-known', 'core']]
    assert resp.get_uint(coap.CONTENT_FORMAT) == coap.CF_LINK_FORMAT


def test_duplicate_con_replays_cached_response_without_calling_handler():
    handler, calls = text_handler()
    ep = Endpoint(handler, rand=Counter())
    first = ep.receive(con_get(0x20), C, 0)
    again = ep.receive(con_get(0x20), C, 1500)
    assert again == first and len(calls) == 1
    assert ep.stats['dup'] == 1


def test_same_mid_from_another_peer_is_not_a_duplicate():
    handler, calls = text_handler()
    ep = Endpoint(handler, rand=Counter())
    ep.receive(con_get(0x21), C, 0)
    ep.receive(con_get(0x21), S, 0)
    assert len(calls) == 2


def test_duplicate_non_is_ignored():
    handler, calls = text_handler()
    ep = Endpoint(handler, rand=Counter())
    data = coap.encode(coap.set_uri(CoapMessage(coap.NON, coap.GET, 0x22, b'\x01'), 'x'))
    assert len(ep.receive(data, C, 0)) == 1
    assert ep.receive(data, C, 10) == [] and len(calls) == 1


def test_dedupe_entry_expires_after_exchange_lifetime():
    handler, calls = text_handler()
    ep = Endpoint(handler, rand=Counter())
    ep.receive(con_get(0x23), C, 0)
    ep.receive(con_get(0x23), C, 246999)
    assert len(calls) == 1
    ep.receive(con_get(0x23), C, 247000)
    assert len(calls) == 2


def test_dedupe_cache_is_capped():
    handler, calls = text_handler()
    ep = Endpoint(handler, rand=Counter(), max_dedupe=4)
    for mid in range(10):
        ep.receive(con_get(mid), C, mid)
    assert len(ep._dedupe) == 4
    ep.receive(con_get(9), C, 20)          # newest still remembered
    assert len(calls) == 10


def test_handler_none_sends_empty_ack_then_separate_con_response():
    pending = []
    ep = Endpoint(lambda req: pending.append(req), rand=Counter())
    out = ep.receive(con_get(0x30, token=b'\x55'), C, 0)
    assert out == [(C, bytes.fromhex('60000030'))]
    ep.respond(pending[0], Response(coap.CONTENT, b'later'))
    assert ep.next_timeout(5) == 0
    resp = only(ep.step(100))
    assert (resp.mtype, resp.code, resp.token, resp.payload) == (
        coap.CON, coap.CONTENT, b'\x55', b'later')
    assert only(ep.step(2100)).mid == resp.mid          # retransmitted until acknowledged
    ep.receive(coap.encode_message(coap.ACK, coap.EMPTY, resp.mid), C, 2200)
    assert ep.step(10000) == [] and ep.next_timeout(10000) is None


def test_duplicate_of_deferred_request_replays_empty_ack():
    pending = []
    ep = Endpoint(lambda req: pending.append(req), rand=Counter())
    ep.receive(con_get(0x31), C, 0)
    assert ep.receive(con_get(0x31), C, 2000) == [(C, bytes.fromhex('60000031'))]
    assert len(pending) == 1


def test_hold_acks_piggybacks_the_later_response_on_the_ack():
    pending = []
    ep = Endpoint(lambda req: pending.append(req), rand=Counter(), hold_acks=True)
    assert ep.receive(con_get(0x33, token=b'\x56'), C, 0) == []
    ep.respond(pending[0], Response(coap.CHANGED, b'stored'))
    resp = only(ep.step(5))
    assert (resp.mtype, resp.code, resp.mid, resp.token, resp.payload) == (
        coap.ACK, coap.CHANGED, 0x33, b'\x56', b'stored')
    assert ep.next_timeout(5) is None                    # nothing to retransmit


def test_hold_acks_duplicate_is_ignored_until_answered_then_replayed():
    pending = []
    ep = Endpoint(lambda req: pending.append(req), rand=Counter(), hold_acks=True)
    ep.receive(con_get(0x34), C, 0)
    assert ep.receive(con_get(0x34), C, 2000) == []
    ep.respond(pending[0], Response(coap.CHANGED))
    first = only(ep.step(2001))
    again = only(ep.receive(con_get(0x34), C, 3000))
    assert len(pending) == 1 and (again.mtype, again.code, again.mid) == (
        first.mtype, first.code, first.mid) == (coap.ACK, coap.CHANGED, 0x34)


def test_answering_twice_is_refused():
    pending = []
    ep = Endpoint(lambda req: pending.append(req), rand=Counter())
    ep.receive(con_get(0x32), C, 0)
    ep.respond(pending[0], Response())
    try:
        ep.respond(pending[0], Response())
    except ValueError:
        return
    raise AssertionError('second respond accepted')


def test_handler_exception_gives_5_00_and_error_event():
    def handler(req):
        raise KeyError('boom')
    ep = Endpoint(handler, rand=Counter())
    assert only(ep.receive(con_get(0x33), C, 0)).code == coap.INTERNAL_SERVER_ERROR
    evs = ep.events()
    assert len(evs) == 1 and evs[0].kind == EV_ERROR and isinstance(evs[0].error, KeyError)


def test_endpoint_answers_without_handler():
    handler, calls = text_handler()
    ep = Endpoint(handler, rand=Counter())
    unknown = coap.encode(coap.set_uri(CoapMessage(coap.CON, 9, 0x34, b'\x01'), 'x'))
    assert only(ep.receive(unknown, C, 0)).code == coap.METHOD_NOT_ALLOWED
    proxy = con_get(0x35, extra=[(coap.PROXY_URI, 'coap://elsewhere/x')])
    assert only(ep.receive(proxy, C, 0)).code == coap.PROXYING_NOT_SUPPORTED
    assert calls == []
    assert only(Endpoint(rand=Counter()).receive(con_get(1), C, 0)).code == coap.NOT_FOUND


def test_ping_gets_reset():
    ep = Endpoint(rand=Counter())
    assert ep.receive(bytes.fromhex('40001234'), C, 0) == [(C, bytes.fromhex('70001234'))]


def test_bad_datagrams_get_protocol_answers_and_change_nothing():
    handler, calls = text_handler()
    ep = Endpoint(handler, rand=Counter(), max_datagram=256)
    answers = [
        (bytes.fromhex('4901abcd') + bytes(9), bytes.fromhex('7000abcd')),      # TKL 9
        (bytes.fromhex('4001abce') + b'\xff', bytes.fromhex('7000abce')),       # empty payload
        (bytes.fromhex('4001abcf') + b'\xf1', bytes.fromhex('7000abcf')),       # nibble 15
        (bytes.fromhex('4101abd001e007f2'), bytes.fromhex('6182abd001')),      # critical
        (bytes.fromhex('4101abd101b2fffe'), bytes.fromhex('6180abd101')),      # not UTF-8
        (bytes.fromhex('40'), None),                                            # truncated
        (bytes.fromhex('80010001'), None),                                      # version 2
    ]
    for data, expected in answers:
        out = ep.receive(data, C, 0)
        assert out == ([] if expected is None else [(C, expected)]), (data, out)
    big = coap.encode_message(coap.CON, coap.PUT, 0xabd2, b'\x02', (), bytes(400))
    resp = only(ep.receive(big, C, 0))
    assert resp.code == coap.REQUEST_ENTITY_TOO_LARGE
    assert resp.get_uint(coap.SIZE1) == 4096                 # whole body allowed block-wise
    assert resp.get_block(coap.BLOCK1) == (0, False, 6)      # in blocks of this size
    assert calls == [] and ep._pending == {} and len(ep.observers) == 0
    assert list(ep._dedupe) == [(C, 0xabd1)]   # only the 4.00, replayed on retransmission
    assert only(ep.receive(con_get(0xabd3), C, 0)).payload == b'hello'   # still serving


# ---- client messaging ----------------------------------------------------------------------

def test_con_retransmission_timing_and_give_up():
    ep = Endpoint(rand=Counter(1001))            # every ACK timeout exactly 2000 ms
    token = ep.request(S, coap.GET, 'x')
    first = ep.step(0)
    assert len(first) == 1 and ep.next_timeout(0) == 2000
    sent_at = [0]
    now = 0
    while now < 100000:
        wait = ep.next_timeout(now)
        if wait is None:
            break
        now += wait
        out = ep.step(now)
        if out:
            assert out == first                  # same datagram, same message id
            sent_at.append(now)
    assert sent_at == [0, 2000, 6000, 14000, 30000]
    assert now == 62000
    evs = ep.events()
    assert [(e.kind, e.token) for e in evs] == [(EV_TIMEOUT, token)]


def test_ack_timeout_random_factor_is_at_most_one_and_a_half():
    ep = Endpoint(rand=Counter(1001, start=1000))   # rand % 1001 == 1000 -> 3000 ms
    ep.request(S, coap.GET, 'x')
    ep.step(0)
    assert ep.next_timeout(0) == 3000
    now, count = 0, 0
    while ep.next_timeout(now) is not None:
        now += ep.next_timeout(now)
        count += len(ep.step(now))
    assert count == 4 and now == 93000               # MAX_TRANSMIT_WAIT


def test_ack_stops_retransmission_and_delivers_response():
    handler, _ = text_handler(b'pong')
    client, server, link = pair(handler)
    token = client.request(S, coap.GET, 'ping')
    link.run(client.step(0), C, 0)
    evs = client.events()
    assert len(evs) == 1 and evs[0].kind == EV_RESPONSE and evs[0].token == token
    assert evs[0].payload == b'pong' and evs[0].code == coap.CONTENT
    assert client.next_timeout(10) is None and client.step(5000) == []


def test_lost_ack_is_recovered_by_retransmission_and_dedupe():
    handler, calls = text_handler()
    client, server, link = pair(handler)
    client.request(S, coap.GET, 'x')
    dropped = []

    def drop_first_answer(src, dst, data):
        if src == S and not dropped:
            dropped.append(data)
            return True
        return False
    link.drop = drop_first_answer
    link.run(client.step(0), C, 0)
    assert client.events() == []
    link.drop = None
    link.run(client.step(client.next_timeout(0)), C, 2000)
    assert [e.kind for e in client.events()] == [EV_RESPONSE] and len(calls) == 1


def test_empty_ack_then_separate_response_is_acknowledged():
    client = Endpoint(rand=Counter())
    token = client.request(S, coap.GET, 'slow')
    req = coap.decode(client.step(0)[0][1])
    client.receive(coap.encode_message(coap.ACK, coap.EMPTY, req.mid), S, 100)
    assert client.step(30000) == []                     # no retransmission after the ACK
    sep = coap.encode_message(coap.CON, coap.CONTENT, 0x4444, token, (), b'done')
    assert client.receive(sep, S, 40000) == [(S, bytes.fromhex('60004444'))]
    ev = client.events()[0]
    assert ev.kind == EV_RESPONSE and ev.payload == b'done'


def test_separate_response_wait_times_out():
    client = Endpoint(rand=Counter())
    token = client.request(S, coap.GET, 'slow')
    req = coap.decode(client.step(0)[0][1])
    client.receive(coap.encode_message(coap.ACK, coap.EMPTY, req.mid), S, 100)
    assert client.next_timeout(100) == client.response_wait_ms
    client.step(100 + client.response_wait_ms)
    assert [(e.kind, e.token) for e in client.events()] == [(EV_TIMEOUT, token)]


def test_reset_to_request_gives_reset_event():
    client = Endpoint(rand=Counter())
    token = client.request(S, coap.GET, 'x')
    req = coap.decode(client.step(0)[0][1])
    client.receive(coap.encode_message(coap.RST, coap.EMPTY, req.mid), S, 10)
    assert [(e.kind, e.token) for e in client.events()] == [(EV_RESET, token)]
    assert client.next_timeout(10) is None


def test_response_with_unknown_token_gets_reset():
    client = Endpoint(rand=Counter())
    con = coap.encode_message(coap.CON, coap.CONTENT, 0x77, b'zz')
    non = coap.encode_message(coap.NON, coap.CONTENT, 0x78, b'zz')
    assert client.receive(con, S, 0) == [(S, bytes.fromhex('70000077'))]
    assert client.receive(non, S, 0) == [(S, bytes.fromhex('70000078'))]
    assert client.events() == []


def test_non_request_without_answer_times_out():
    client = Endpoint(rand=Counter())
    token = client.request(S, coap.GET, 'x', confirmable=False)
    out = client.step(1000)
    assert coap.decode(out[0][1]).mtype == coap.NON
    assert client.next_timeout(1000) == client.response_wait_ms
    client.step(1000 + client.response_wait_ms)
    assert [(e.kind, e.token) for e in client.events()] == [(EV_TIMEOUT, token)]


def test_open_exchanges_are_capped():
    client = Endpoint(rand=Counter(), max_exchanges=2)
    client.request(S, coap.GET, 'a')
    client.request(S, coap.GET, 'b')
    try:
        client.request(S, coap.GET, 'c')
    except CoapBusy:
        return
    raise AssertionError('third exchange accepted')


def test_next_timeout_idle_and_pending_output():
    ep = Endpoint(rand=Counter())
    assert ep.next_timeout(0) is None
    ep.request(S, coap.GET, 'x', confirmable=False)
    assert ep.next_timeout(0) == 0


# ---- observe ------------------------------------------------------------------------------

def observed(code=coap.CONTENT, **kw):
    state = {'value': 0, 'code': code}

    def handler(req):
        return Response(state['code'], ('v%d' % state['value']).encode())
    client, server, link = pair(handler, **kw)
    token = client.request(S, coap.GET, 'obs', observe=0)
    link.run(client.step(0), C, 0)
    return client, server, link, token, state


def test_observe_registration_and_increasing_notifications():
    client, server, link, token, state = observed()
    assert len(server.observers) == 1
    for i in range(1, 4):
        state['value'] = i
        assert server.notify('obs') == 1
        link.run(server.step(i * 1000), S, i * 1000)
    evs = client.events()
    assert [e.kind for e in evs] == [EV_RESPONSE] + [EV_NOTIFICATION] * 3
    assert [e.payload for e in evs] == [b'v0', b'v1', b'v2', b'v3']
    seqs = [e.observe for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert all(e.token == token for e in evs)


def test_every_nth_notification_is_confirmable():
    client, server, link, token, state = observed(notify_con_every=3)
    for i in range(6):
        server.notify('obs')
        link.run(server.step(i), S, i)
    types = [m.mtype for m in link.sent_by(S) if m.code == coap.CONTENT][1:]
    assert types == [coap.NON, coap.NON, coap.CON, coap.NON, coap.NON, coap.CON]


def test_reset_to_notification_removes_observer():
    client, server, link, token, state = observed()
    client.cancel(token)
    server.notify('obs')
    link.run(server.step(10), S, 10)
    assert link.sent_by(C)[-1].mtype == coap.RST
    assert len(server.observers) == 0
    assert server.notify('obs') == 0


def test_unacknowledged_con_notification_removes_observer():
    client, server, link, token, state = observed(notify_con_every=1)
    server.notify('obs')
    out = server.step(0)
    assert coap.decode(out[0][1]).mtype == coap.CON     # never delivered
    now = 0
    while server.next_timeout(now) is not None:
        now += server.next_timeout(now)
        server.step(now)
    assert len(server.observers) == 0


def test_new_notification_replaces_one_in_flight():
    client, server, link, token, state = observed(notify_con_every=1)
    server.notify('obs')
    first = coap.decode(server.step(0)[0][1])
    due = server.next_timeout(0)
    state['value'] = 9
    server.notify('obs')
    second = coap.decode(server.step(500)[0][1])
    assert second.mid != first.mid and second.payload == b'v9'
    assert len(server._pending) == 1
    assert server.next_timeout(500) == due - 500     # keeps the first one's timer


def test_deregistration_with_observe_1():
    client, server, link, token, state = observed()
    msg = coap.set_uri(CoapMessage(coap.CON, coap.GET, 0x99, token), 'obs')
    msg.add(coap.OBSERVE, 1)
    resp = only(server.receive(coap.encode(msg), C, 50))
    assert resp.code == coap.CONTENT and resp.get(coap.OBSERVE) is None
    assert len(server.observers) == 0


def test_error_notification_ends_observation():
    client, server, link, token, state = observed()
    state['code'] = coap.NOT_FOUND
    server.notify('obs')
    link.run(server.step(10), S, 10)
    evs = client.events()
    assert [(e.kind, e.code) for e in evs[1:]] == [(EV_NOTIFICATION, coap.NOT_FOUND)]
    assert len(server.observers) == 0 and client.exchanges == {}


def test_observers_are_capped():
    handler, _ = text_handler()
    server = Endpoint(handler, rand=Counter(), max_observers=1)
    for mid, addr in ((1, C), (2, S)):
        msg = coap.set_uri(CoapMessage(coap.CON, coap.GET, mid, b'\x01'), 'obs')
        resp = only(server.receive(coap.encode(msg.add(coap.OBSERVE, 0)), addr, 0))
        assert (resp.get(coap.OBSERVE) is not None) == (addr == C)
    assert len(server.observers) == 1


def test_reregistration_replaces_observer():
    handler, _ = text_handler()
    server = Endpoint(handler, rand=Counter())
    for mid, token in ((1, b'\x01'), (2, b'\x02')):
        msg = coap.set_uri(CoapMessage(coap.CON, coap.GET, mid, token), 'obs')
        server.receive(coap.encode(msg.add(coap.OBSERVE, 0)), C, 0)
    assert len(server.observers) == 1
    server.notify('obs')
    assert only(server.step(1)).token == b'\x02'


def test_stale_notification_is_dropped():
    client = Endpoint(rand=Counter())
    token = client.request(S, coap.GET, 'obs', observe=0)
    req = coap.decode(client.step(0)[0][1])

    def note(mtype, mid, seq, body):
        msg = CoapMessage(mtype, coap.CONTENT, mid, token, payload=body)
        return coap.encode(msg.add(coap.OBSERVE, seq))
    client.receive(note(coap.ACK, req.mid, 10, b'a'), S, 0)
    client.receive(note(coap.NON, 0x500, 12, b'b'), S, 100)
    client.receive(note(coap.NON, 0x501, 11, b'old'), S, 200)     # reordered: dropped
    client.receive(note(coap.NON, 0x502, 5, b'late'), S, 200000)  # 128 s later: fresh
    assert [e.payload for e in client.events()] == [b'a', b'b', b'late']


# ---- block-wise ---------------------------------------------------------------------------

def big_body(n=3000):
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def test_block2_get_of_large_resource():
    body = big_body()
    handler, calls = text_handler(body)
    client, server, link = pair(handler, block_szx=2)
    client.request(S, coap.GET, 'large')
    link.run(client.step(0), C, 0)
    evs = client.events()
    assert len(evs) == 1 and evs[0].payload == body
    responses = link.sent_by(S)
    assert len(responses) == 47                      # ceil(3000 / 64)
    assert responses[0].get_uint(coap.SIZE2) == 3000
    assert responses[-1].get_block(coap.BLOCK2) == (46, False, 2)
    assert len(calls) == 1                           # later blocks come from the snapshot


def test_block2_follows_smaller_block_size_asked_by_client():
    handler, _ = text_handler(big_body(300))
    server = Endpoint(handler, rand=Counter())
    req = con_get(1, 'large', extra=[(coap.BLOCK2, coap.encode_block(0, False, 1))])
    resp = only(server.receive(req, C, 0))
    assert resp.get_block(coap.BLOCK2) == (0, True, 1) and len(resp.payload) == 32
    req = con_get(2, 'large', extra=[(coap.BLOCK2, coap.encode_block(9, False, 1))])
    resp = only(server.receive(req, C, 0))
    assert resp.get_block(coap.BLOCK2) == (9, False, 1)
    assert resp.payload == big_body(300)[288:]


def test_block2_out_of_range_gives_4_02():
    handler, _ = text_handler(big_body(100))
    server = Endpoint(handler, rand=Counter(), block_szx=2)
    req = con_get(1, 'large', extra=[(coap.BLOCK2, coap.encode_block(5, False, 2))])
    assert only(server.receive(req, C, 0)).code == coap.BAD_OPTION


def upload_server(**kw):
    bodies = []

    def handler(req):
        bodies.append(req.payload)
        return Response(coap.CHANGED)
    server = Endpoint(handler, rand=Counter(), **kw)
    return server, bodies


def test_block1_upload_is_reassembled():
    body = big_body()
    server, bodies = upload_server(block_szx=2)
    client = Endpoint(rand=Counter(start=3), block_szx=2)
    link = Link(client=client, server=server)
    client.request(S, coap.PUT, 'up', body)
    link.run(client.step(0), C, 0)
    assert bodies == [body]
    codes = [m.code for m in link.sent_by(S)]
    assert codes == [coap.CONTINUE] * 46 + [coap.CHANGED]
    assert link.sent_by(C)[0].get_uint(coap.SIZE1) == 3000
    assert [e.code for e in client.events()] == [coap.CHANGED]


def test_block1_server_asks_for_smaller_blocks():
    body = big_body(2500)
    server, bodies = upload_server(block_szx=2)          # server prefers 64
    client = Endpoint(rand=Counter(start=3), block_szx=6)  # client starts with 1024
    link = Link(client=client, server=server)
    client.request(S, coap.POST, 'up', body)
    link.run(client.step(0), C, 0)
    assert bodies == [body]
    reqs = link.sent_by(C)
    assert reqs[0].get_block(coap.BLOCK1) == (0, True, 6)
    assert reqs[1].get_block(coap.BLOCK1) == (16, True, 2)   # offset 1024 at 64 bytes


def block1_put(mid, num, more, szx, payload, size1=None, path='up'):
    msg = coap.set_uri(CoapMessage(coap.CON, coap.PUT, mid, b'\x01'), path)
    msg.add(coap.BLOCK1, coap.encode_block(num, more, szx))
    if size1 is not None:
        msg.add(coap.SIZE1, size1)
    msg.payload = payload
    return coap.encode(msg)


def test_block1_declared_too_large_gives_4_13_with_size1():
    server, bodies = upload_server(max_body=1000)
    resp = only(server.receive(block1_put(1, 0, True, 2, bytes(64), size1=5000), C, 0))
    assert resp.code == coap.REQUEST_ENTITY_TOO_LARGE and resp.get_uint(coap.SIZE1) == 1000
    assert bodies == [] and server._rx == {}


def test_block1_growing_past_the_limit_gives_4_13():
    server, bodies = upload_server(max_body=100)
    assert only(server.receive(block1_put(1, 0, True, 2, bytes(64)), C, 0)).code == \
        coap.CONTINUE
    resp = only(server.receive(block1_put(2, 1, True, 2, bytes(64)), C, 0))
    assert resp.code == coap.REQUEST_ENTITY_TOO_LARGE and resp.get_uint(coap.SIZE1) == 100
    assert server._rx == {}


def test_block1_out_of_order_gives_4_08():
    server, bodies = upload_server()
    assert only(server.receive(block1_put(1, 2, True, 2, bytes(64)), C, 0)).code == \
        coap.REQUEST_ENTITY_INCOMPLETE
    server.receive(block1_put(2, 0, True, 2, bytes(64)), C, 0)
    assert only(server.receive(block1_put(3, 2, False, 2, bytes(10)), C, 0)).code == \
        coap.REQUEST_ENTITY_INCOMPLETE
    assert bodies == []


def test_block1_continue_echoes_block_option():
    server, bodies = upload_server()
    resp = only(server.receive(block1_put(1, 0, True, 2, bytes(64)), C, 0))
    assert resp.get_block(coap.BLOCK1) == (0, True, 2)
    resp = only(server.receive(block1_put(2, 1, False, 2, b'end'), C, 0))
    assert resp.code == coap.CHANGED and resp.get_block(coap.BLOCK1) == (1, False, 2)
    assert bodies == [bytes(64) + b'end']


def test_reassembly_buffers_are_capped_and_expire():
    server, bodies = upload_server(max_buffers=2)
    for i in range(4):
        server.receive(block1_put(10 + i, 0, True, 2, bytes(64), path='p%d' % i), C, i)
    assert len(server._rx) == 2
    server.step(61000 + 4)
    assert server._rx == {}


def test_large_request_without_block1_gives_4_13():
    server, bodies = upload_server(max_body=100)
    msg = coap.encode_message(coap.CON, coap.PUT, 5, b'\x01', (), bytes(150))
    resp = only(server.receive(msg, C, 0))
    assert resp.code == coap.REQUEST_ENTITY_TOO_LARGE and resp.get_uint(coap.SIZE1) == 100


def test_observe_notification_with_blocks_is_fetched_whole():
    state = {'body': big_body(200)}
    client, server, link = pair(lambda req: Response(coap.CONTENT, state['body']),
                                block_szx=2)
    token = client.request(S, coap.GET, 'obs', observe=0)
    link.run(client.step(0), C, 0)
    state['body'] = big_body(250)
    server.notify('obs')
    link.run(server.step(100), S, 100)
    evs = client.events()
    assert [(e.kind, e.token, e.payload) for e in evs] == [
        (EV_RESPONSE, token, big_body(200)), (EV_NOTIFICATION, token, big_body(250))]
    assert list(client.exchanges) == [token]      # the block fetch is gone


def test_pending_cap_turns_con_notifications_into_non():
    client, server, link, token, state = observed(notify_con_every=1, max_pending=0)
    server.notify('obs')
    assert coap.decode(server.step(5)[0][1]).mtype == coap.NON


def test_mutated_datagrams_never_raise_and_tables_stay_bounded():
    state = {'n': 0}

    def lcg():
        state['n'] = (state['n'] * 1103515245 + 12345) & 0x7FFFFFFF
        return state['n'] >> 8
    handler, _ = text_handler(big_body(700))
    limits = dict(max_dedupe=6, max_observers=2, max_buffers=2, max_exchanges=4,
                  max_pending=3, block_szx=2, max_body=500)
    server = Endpoint(handler, rand=Counter(), **limits)
    client = Endpoint(rand=Counter(start=4), **limits)
    tokens = [client.request(S, coap.GET, 'obs', observe=0), client.request(S, coap.PUT,
                                                                             'up', bytes(300))]
    samples = [m for _, m in client.step(0)]
    req = coap.set_uri(CoapMessage(coap.CON, coap.GET, 1, b'\x01'), 'obs').add(coap.OBSERVE, 0)
    samples.append(coap.encode(req))
    samples.append(block1_put(2, 0, True, 2, bytes(64)))
    for token in tokens:
        for code in (coap.CONTENT, coap.CONTINUE, coap.CHANGED):
            msg = CoapMessage(coap.CON, code, 3, token, payload=bytes(64))
            samples.append(coap.encode(msg.add(coap.OBSERVE, 5).add(
                coap.BLOCK2, coap.encode_block(0, True, 2))))
    now = 0
    for i in range(1500):
        buf = bytearray(samples[lcg() % len(samples)])
        for _ in range(lcg() % 3):
            buf[lcg() % len(buf)] ^= 1 << (lcg() % 8)
        if lcg() % 4 == 0:
            buf = buf[:lcg() % len(buf) + 1]
        now += lcg() % 3000
        for ep, peer in ((server, C), (client, S)):
            for _, out in ep.receive(bytes(buf), peer, now) + ep.step(now):
                assert len(out) <= ep.max_datagram
        if i % 50 == 0:
            server.notify('obs')
    for ep in (server, client):
        assert len(ep._dedupe) <= 6 and len(ep.observers) <= 2
        assert len(ep._rx) <= 2 and len(ep._snap) <= 2
        assert len(ep.exchanges) <= 4
    assert server.stats['bad'] > 0 and server.stats['rx'] == 1500


def test_idle_endpoint_returns_the_shared_empty_lists():
    from spot.core.coap_client import NOTHING
    client, server, link = pair(text_handler()[0])
    assert server.step(0) is NOTHING and server.events() is NOTHING
    client.request(S, coap.GET, 'test')
    out = client.step(0)
    assert len(out) == 1 and out is not NOTHING and NOTHING == []


def test_block2_snapshot_keeps_its_body_when_the_handler_reuses_its_response():
    first = big_body()
    resp = Response(coap.CONTENT, first, coap.CF_TEXT)
    server = Endpoint(lambda req: resp, rand=Counter(), block_szx=2)
    m = only(server.receive(con_get(1, 'large', extra=[(coap.BLOCK2, 0x02)]), C, 0))
    assert m.payload == first[:64]
    resp.payload = bytes(reversed(first))   # the handler's next body, in the same Response
    m = only(server.receive(con_get(2, 'large', extra=[(coap.BLOCK2, 0x12)]), C, 1))
    assert m.payload == first[64:128]
