"""Sans-I/O CoAP endpoint: the RFC 7252 messaging layer under a server and a client side.

Driven like Wakaama: feed every datagram to receive(data, addr, now) and call step(now)
whenever next_timeout(now) milliseconds have passed; both return a list of (addr, datagram)
to send.  request(), respond(), notify() and cancel() only queue output, which the next
receive()/step() returns (next_timeout() is then 0).  Time `now` is an int count of
milliseconds on any monotonic clock; `rand` (no argument -> 32-bit int) is injectable.
Client results come out of events().  Every table is capped, so memory stays bounded.
Returned lists are the caller's to read, not to change: an empty one is shared (NOTHING),
so an idle turn allocates nothing.

This layer does message ids, CON retransmission with exponential back-off, duplicate
detection with replay of the cached answer, ACK/RST matching and error answers for bad
datagrams.  coap_server does requests (blocks; observe in coap_observe, imported with the
first observation); coap_client does exchanges: functions of the endpoint, whose one
instance holds their state too (on a board: no object, class or table of their own).
"""
from .compat import const
from . import coap
from . import coap_client, coap_server

# CoAP numbers (the same as coap's), private so that they fold into the bytecode
_CON = const(0)
_NON = const(1)
_ACK = const(2)
_RST = const(3)
_EMPTY = const(0)
_OBSERVE = const(6)
_CONTENT_FORMAT = const(12)
_ACCEPT = const(17)
_BLOCK1 = const(27)
_SIZE1 = const(60)
_REQUEST_ENTITY_TOO_LARGE = const(141)

# Transmission kinds whose answers go back to a side (the server's responses need none)
_TX_REQUEST = const(1)   # coap_client
_TX_NOTIFY = const(2)    # coap_server

_ACK_TIMEOUT_MS = const(2000)
_MAX_RETRANSMIT = const(4)
_EXCHANGE_LIFETIME_MS = const(247000)
_NON_LIFETIME_MS = const(145000)
_RESPONSE_WAIT_MS = const(93000)  # wait for a separate or NON response (MAX_TRANSMIT_WAIT)


class Transmission:
    """A CON message awaiting ACK/RST: retransmitted until max_retransmit, then timed out."""

    __slots__ = ('addr', 'mid', 'data', 'count', 'timeout', 'due', 'kind', 'owner')

    def __init__(self, addr, mid, data, timeout, kind, owner):
        self.addr = addr
        self.mid = mid
        self.data = data
        self.count = 0
        self.timeout = timeout
        self.due = -1          # armed (now + timeout) when first handed out
        self.kind = kind
        self.owner = owner


class Endpoint:
    """One CoAP endpoint (server and client at once).

    handler(request) -> Response, or None to answer later with respond(request, response).
    Limits: block_szx (preferred block size 2**(szx+4)), max_body (largest request or
    response body reassembled), max_datagram (larger datagrams get 4.13), max_pending
    (our CON notifications/separate responses in flight), max_dedupe (remembered message
    ids, each with its reply), max_observers, max_exchanges (client), max_buffers
    (Block1 reassemblies and Block2 snapshots each), max_events.  On a small board use
    e.g. block_szx=4, max_body=1024, max_datagram=400, max_dedupe=6, max_buffers=1.
    hold_acks: a CON request whose handler returned None gets no empty ACK; respond()
    then piggy-backs the response on the ACK (a server that answers within the ACK
    timeout, e.g. after a store commit); duplicates meanwhile are ignored.
    """

    # What a board leaves at its default is a class attribute (on MicroPython, where
    # __slots__ does nothing, an instance's attributes are a hash table: 27 entries fit
    # one of 29 slots, 33 take 37)
    hold_acks = False
    extra_options = None
    ack_timeout_ms = _ACK_TIMEOUT_MS
    max_retransmit = _MAX_RETRANSMIT
    response_wait_ms = _RESPONSE_WAIT_MS

    def __init__(self, handler=None, rand=None, block_szx=6, max_body=4096,
                 max_datagram=1280, max_pending=8, max_dedupe=16, max_observers=8,
                 max_exchanges=8, max_buffers=2, max_events=32, notify_con_every=8,
                 ack_timeout_ms=_ACK_TIMEOUT_MS, max_retransmit=_MAX_RETRANSMIT,
                 extra_options=None, hold_acks=False):
        if rand is None:
            try:
                from os import urandom
                urandom(4)
                rand = lambda: int.from_bytes(urandom(4), 'big')   # noqa: E731
            except (ImportError, AttributeError, OSError, NotImplementedError):
                import random
                rand = lambda: random.getrandbits(32)              # noqa: E731
        self.rand = rand
        if hold_acks:
            self.hold_acks = hold_acks
        self.max_datagram = max_datagram
        self.max_pending = max_pending
        self.max_dedupe = max_dedupe
        self.max_events = max_events
        if ack_timeout_ms != _ACK_TIMEOUT_MS:
            self.ack_timeout_ms = ack_timeout_ms
        if max_retransmit != _MAX_RETRANSMIT:
            self.max_retransmit = max_retransmit
        if extra_options is not None:
            self.extra_options = extra_options
        self.now = 0
        self._mid = self.rand() & 0xFFFF
        self._outbox = []
        self._unarmed = []
        self._pending = {}     # (addr, mid) -> Transmission
        self._dedupe = {}      # (addr, mid) -> (expires, reply datagram or None)
        self._events = []
        self.stats = {'rx': 0, 'tx': 0, 'bad': 0, 'dup': 0, 'retx': 0, 'dropped_events': 0}
        self.max_body = max_body
        self.block_szx = block_szx
        # the server side's (coap_server)
        self.handler = handler
        self.max_observers = max_observers
        self.max_buffers = max_buffers
        self.con_every = notify_con_every
        self.observers = {}    # (addr, uri key) -> coap_observe.Observer
        self._rx = {}          # (addr, uri key) -> [bytearray, last use, code]  Block1 (coap_blocks)
        self._snap = {}        # (addr, uri key) -> [Response, last use, code]   Block2
        self._seq = 1
        self._buf = bytearray()   # response encode buffer, reused
        # the client side's (coap_client)
        self.max_exchanges = max_exchanges
        self.exchanges = {}    # token -> Exchange
        self._ex_unarmed = []  # NON requests whose response wait starts once handed out

    # ---- public API -------------------------------------------------------------------

    def receive(self, data, addr, now):
        """Process one datagram from addr; returns [(addr, datagram), ...] to send."""
        self.now = now
        self.stats['rx'] += 1
        try:
            msg = coap.decode(data, self.max_datagram, self.extra_options)
        except coap.CoapError as err:
            self.stats['bad'] += 1
            if err.code == _REQUEST_ENTITY_TOO_LARGE:
                # datagram too big: say how much fits block-wise, and the block size to use
                err.options = [(_BLOCK1, coap.encode_block(0, False, self.block_szx)),
                               (_SIZE1, coap.encode_uint(self.max_body))]
            reply = coap.error_reply(err, self.next_mid() if err.mtype == _NON else None)
            if reply is not None:
                self.send(addr, reply)
            return self._flush(now)
        mtype = msg.mtype
        if mtype == _ACK or mtype == _RST:    # the answer to one of our CON messages
            tx = self._pending.pop((addr, msg.mid), None)
            if tx is None:
                if mtype == _RST and self.observers:
                    from . import coap_observe
                    coap_observe.on_reset(self, addr, msg.mid)
            elif tx.kind == _TX_REQUEST:
                coap_client.on_ack(self, tx.owner, msg, addr, now)
            elif tx.kind == _TX_NOTIFY:
                from . import coap_observe
                coap_observe.on_notify_answer(self, tx.owner, tx, mtype == _RST)
        elif msg.code == _EMPTY:
            if mtype == _CON:  # CoAP ping
                self.send(addr, coap.encode_message(_RST, _EMPTY, msg.mid))
        else:
            key = (addr, msg.mid)
            seen = self._dedupe.get(key)
            if seen is not None and seen[0] > now:
                self.stats['dup'] += 1
                if mtype == _CON and seen[1] is not None:
                    self.send(addr, seen[1])
            else:
                if msg.code < 32:
                    reply = coap_server.on_request(self, msg, addr, now)
                else:
                    reply = coap_client.on_response(self, msg, addr, now)
                cache = self._dedupe    # remembered: a duplicate gets the same reply
                if len(cache) >= self.max_dedupe:
                    # room for one: drop the entry that expires first (an expired one if any)
                    oldest = None
                    for k in cache:
                        if oldest is None or cache[k][0] < cache[oldest][0]:
                            oldest = k
                    del cache[oldest]
                if mtype == _CON:
                    cache[key] = (now + _EXCHANGE_LIFETIME_MS, reply)
                else:
                    cache[key] = (now + _NON_LIFETIME_MS, None)
                if reply is not None:
                    self.send(addr, reply)
        return self._flush(now)

    def step(self, now):
        """Run timers (retransmissions, give-ups, expiries); returns datagrams to send."""
        self.now = now
        pending = self._pending
        for key in pending:   # copy the table only when a timer is due (it may change)
            if 0 <= pending[key].due <= now:
                break
        else:
            pending = ()
        for tx in list(pending.values()) if pending else ():
            if 0 <= tx.due <= now:
                if tx.count < self.max_retransmit:
                    tx.count += 1
                    tx.timeout *= 2
                    tx.due = now + tx.timeout
                    self.stats['retx'] += 1
                    self._outbox.append((tx.addr, tx.data))
                else:   # given up
                    del self._pending[(tx.addr, tx.mid)]
                    if tx.kind == _TX_REQUEST:
                        coap_client.on_give_up(self, tx.owner)
                    elif tx.kind == _TX_NOTIFY:
                        from . import coap_observe
                        coap_observe.on_notify_answer(self, tx.owner, tx, True)
        coap_client.step(self, now)
        coap_server.step(self, now)
        return self._flush(now)

    def next_timeout(self, now):
        """Milliseconds until step() has work (0 = now), or None when nothing is scheduled."""
        if self._outbox:
            return 0
        due = None
        table = self.exchanges     # client exchanges awaiting a response
        for key in table:
            ex = table[key]
            if ex.due >= 0 and (due is None or ex.due < due):
                due = ex.due
        table = self._pending
        for key in table:
            tx = table[key]
            if due is None or tx.due < due:
                due = tx.due
        if due is None:
            return None
        return max(0, due - now)

    def request(self, addr, code, path, payload=b'', confirmable=True, observe=None,
                query=None, content_format=None, accept=None, options=None):
        """Start a client request; returns its token. Results arrive as events()."""
        if len(self.exchanges) >= self.max_exchanges:
            raise coap_client.CoapBusy('too many open exchanges')
        tmpl = coap.CoapMessage(_CON if confirmable else _NON, code)
        coap.set_uri(tmpl, path, query)
        if observe is not None:
            tmpl.add(_OBSERVE, observe)
        if content_format is not None:
            tmpl.add(_CONTENT_FORMAT, content_format)
        if accept is not None:
            tmpl.add(_ACCEPT, accept)
        if options:
            for num, value in options:
                tmpl.add(num, value)
        return coap_client.request_like(self, addr, tmpl, payload)

    def cancel(self, token):
        """Forget a client exchange or observation (later notifications get a Reset)."""
        ex = self.exchanges.get(token)
        if ex is not None:
            coap_client._finish(self, ex)

    def respond(self, request, response):
        """Send the response to a request whose handler returned None (separate, or
        piggy-backed on the ACK with hold_acks, then also the reply to its duplicates)."""
        reply = coap_server.respond(self, request, response, self.now)
        if reply is not None:
            key = (request.addr, request.msg.mid)
            seen = self._dedupe.get(key)
            if seen is not None:
                self._dedupe[key] = (seen[0], reply)
            self.send(request.addr, reply)

    def notify(self, path, response=None):
        """Notify observers of `path`; response None re-runs the handler per observer."""
        if not self.observers:
            return 0
        from . import coap_observe
        return coap_observe.notify_path(self, path, response, self.now)

    def events(self):
        """Drain and return client events (Event objects) in arrival order."""
        evs = self._events
        if not evs:
            return coap_client.NOTHING
        self._events = []
        return evs

    # ---- used by the server and client sides ------------------------------------------

    def next_mid(self):
        mid = self._mid = (self._mid + 1) & 0xFFFF
        return mid

    def send(self, addr, data):
        self._outbox.append((addr, data))

    def send_con(self, addr, mid, data, kind, owner, force=False, replace=None):
        """Queue a CON message and track it; None when the pending table is full.

        replace: a Transmission this one supersedes (keeps its counter and timer).
        """
        if replace is not None:
            self._pending.pop((replace.addr, replace.mid), None)
        elif not force and len(self._pending) >= self.max_pending:
            return None
        timeout = self.ack_timeout_ms + self.rand() % (self.ack_timeout_ms // 2 + 1)
        tx = Transmission(addr, mid, data, timeout, kind, owner)
        if replace is not None:
            tx.count, tx.timeout, tx.due = replace.count, replace.timeout, replace.due
        if tx.due < 0:
            self._unarmed.append(tx)
        self._pending[(addr, mid)] = tx
        self._outbox.append((addr, data))
        return tx

    def forget_tx(self, tx):
        if tx is not None:
            self._pending.pop((tx.addr, tx.mid), None)

    def emit(self, event):
        if len(self._events) >= self.max_events:
            self._events.pop(0)
            self.stats['dropped_events'] += 1
        self._events.append(event)

    # ---- internals ----------------------------------------------------------------------

    def _flush(self, now):
        if self._unarmed:   # (no allocation on idle turns)
            for tx in self._unarmed:
                if tx.due < 0:
                    tx.due = now + tx.timeout
            self._unarmed = []
        if self._ex_unarmed:   # NON requests: their response wait starts once handed out
            for ex in self._ex_unarmed:
                if ex.tx is None and ex.due < 0 and self.exchanges.get(ex.token) is ex:
                    ex.due = now + self.response_wait_ms
            self._ex_unarmed = []
        out = self._outbox
        if not out:
            return coap_client.NOTHING
        self._outbox = []
        self.stats['tx'] += len(out)
        return out
