"""MQTT 3.1.1 packet codec: encoders, a decoder, a chunk-fed stream parser and
topic checks. Portable, no I/O (MicroPython and CPython). The broker's side (CONNECT,
SUBSCRIBE and UNSUBSCRIBE decoded, CONNACK, SUBACK and UNSUBACK built, topic-filter
matching) is core/mqtt_broker's, read through this module; MQTT's numbers by name
are core/mqtt_numbers'.

Every malformed input raises MqttError; MQTT has no error reply, so whoever
owns the connection closes it. Encoders raise ValueError for bad arguments.
A PUBLISH longer than the parser's max_packet is not an error: its topic and
packet id are read and its payload is discarded as it arrives (spec 9.2, Size).
"""
from .compat import const, MICROPYTHON


if MICROPYTHON:
    def __getattr__(name):
        # mqtt.PUBLISH, `from .mqtt import encode_suback`: core/mqtt_numbers' numbers or
        # core/mqtt_broker's broker side, imported on first use (this module and
        # core/mqtt_client use private copies and never ask)
        from . import mqtt_numbers
        if hasattr(mqtt_numbers, name):
            return getattr(mqtt_numbers, name)
        from . import mqtt_broker
        return getattr(mqtt_broker, name)
else:
    from .mqtt_numbers import *  # noqa: F401,F403  MQTT's numbers as this module's attributes

    def __getattr__(name):
        # mqtt.encode_suback: core/mqtt_broker's, imported on first use (it imports this
        # module, so not here)
        from . import mqtt_broker
        return getattr(mqtt_broker, name)

# core/mqtt_numbers.py's numbers that this module uses, as private constants: no global
# slot holds them on a board
_CONNECT = const(1)
_CONNACK = const(2)
_PUBLISH = const(3)
_PUBACK = const(4)
_PUBREC = const(5)
_PUBREL = const(6)
_PUBCOMP = const(7)
_SUBSCRIBE = const(8)
_SUBACK = const(9)
_UNSUBSCRIBE = const(10)
_UNSUBACK = const(11)
_PINGREQ = const(12)
_PINGRESP = const(13)
_DISCONNECT = const(14)
_MAX_REMAINING_LENGTH = const(268435455)
_DEFAULT_MAX_PACKET = const(16384)
_SUBACK_FAILURE = const(0x80)

# Fixed-header flags every type but PUBLISH must carry (section 2.2.2).
_REQUIRED_FLAGS = b'\xff\x00\x00\xff\x00\x00\x02\x00\x02\x00\x02\x00\x00\x00\x00\xff'

_DUP = const(0x08)
_RETAIN = const(0x01)


class MqttError(Exception):
    """A malformed or oversized packet, or a protocol violation."""


class Packet:
    """One decoded control packet; only the fields of its type are set."""
    type = 0
    flags = 0
    pid = 0
    # PUBLISH
    topic = None
    payload = b''
    qos = 0
    retain = False
    dup = False
    # CONNACK
    session_present = False
    return_code = 0
    # SUBSCRIBE: list of (filter, qos); UNSUBSCRIBE: list of filters
    # SUBACK: list of granted QoS / 0x80
    filters = None
    codes = None
    # CONNECT
    client_id = None
    keepalive = 0
    clean_session = False
    will_topic = None
    will_payload = None
    will_qos = 0
    will_retain = False
    username = None
    password = None
    # a PUBLISH over the parser's max_packet: its size in bytes (payload discarded;
    # topic None when the topic alone was over the limit)
    oversized = 0

    def __init__(self, type, flags=0):
        self.type = type
        self.flags = flags

    def __repr__(self):
        if self.type == _PUBLISH:
            return '<PUBLISH %r qos=%d retain=%d dup=%d pid=%d %d bytes>' % (
                self.topic, self.qos, self.retain, self.dup, self.pid,
                len(self.payload))
        return '<%s pid=%d>' % (packet_name(self.type), self.pid)


def packet_name(type):
    """A packet type's name, for a message (core/mqtt_numbers, imported then)."""
    from . import mqtt_numbers
    return mqtt_numbers.PACKET_NAMES[type]


# ---------------------------------------------------------------- varint

def varint_size(n):
    """Bytes the remaining-length varint of n takes (1..4)."""
    if n < 128:
        return 1
    if n < 16384:
        return 2
    if n < 2097152:
        return 3
    if n <= _MAX_REMAINING_LENGTH:
        return 4
    raise ValueError('remaining length too large')


def _put_varint(out, pos, n):
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out[pos] = b | 0x80
            pos += 1
        else:
            out[pos] = b
            return pos + 1


def encode_varint(n):
    """The remaining-length encoding of n as bytes."""
    out = bytearray(varint_size(n))
    _put_varint(out, 0, n)
    return bytes(out)


def decode_varint(buf, pos=0, end=-1):
    """Decode a remaining length at buf[pos]. Returns (value, next_pos), or
    (-1, pos) when more bytes are needed. Raises MqttError past 4 bytes."""
    if end < 0:
        end = len(buf)
    value = 0
    shift = 0
    i = pos
    while i < end:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
        if shift >= 28:
            raise MqttError('remaining length longer than 4 bytes')
    return -1, pos


# ---------------------------------------------------------------- encoding

def _utf8(s, what):
    if isinstance(s, str):
        s = s.encode('utf-8')
    if len(s) > 65535:
        raise ValueError(what + ' longer than 65535 bytes')
    return s


def _start(first, n):
    """A zeroed packet buffer with its fixed header written."""
    out = bytearray(1 + varint_size(n) + n)
    out[0] = first
    return out, _put_varint(out, 1, n)


def _put_u16(out, pos, n):
    out[pos] = n >> 8
    out[pos + 1] = n & 0xFF
    return pos + 2


def _put_str(out, pos, data):
    n = len(data)
    pos = _put_u16(out, pos, n)
    out[pos:pos + n] = data
    return pos + n


def _check_pid(pid):
    if not 0 < pid < 65536:
        raise ValueError('packet identifier must be 1..65535')


def _check_qos(qos):
    if qos not in (0, 1, 2):
        raise ValueError('QoS must be 0, 1 or 2')


def encode_connect(client_id, keepalive=60, clean_session=True,
                   will_topic=None, will_payload=b'', will_qos=0,
                   will_retain=False, username=None, password=None):
    """CONNECT (protocol level 4). keepalive in seconds (0 disables)."""
    if not 0 <= keepalive < 65536:
        raise ValueError('keepalive must be 0..65535 s')
    cid = _utf8(client_id, 'client id')
    if not cid and not clean_session:
        raise ValueError('an empty client id needs clean_session')
    flags = 0x02 if clean_session else 0
    rl = 10 + 2 + len(cid)
    if will_topic is not None:
        wt = _utf8(will_topic, 'will topic')
        check_topic(wt)
        wp = _utf8(will_payload, 'will message')
        _check_qos(will_qos)
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
        rl += 4 + len(wt) + len(wp)
    if username is not None:
        un = _utf8(username, 'user name')
        flags |= 0x80
        rl += 2 + len(un)
    if password is not None:
        if username is None:
            raise ValueError('a password needs a user name in MQTT 3.1.1')
        pw = _utf8(password, 'password')
        flags |= 0x40
        rl += 2 + len(pw)
    out, pos = _start(_CONNECT << 4, rl)
    pos = _put_str(out, pos, b'MQTT')
    out[pos] = 4
    out[pos + 1] = flags
    pos = _put_u16(out, pos + 2, keepalive)
    pos = _put_str(out, pos, cid)
    if will_topic is not None:
        pos = _put_str(out, pos, wt)
        pos = _put_str(out, pos, wp)
    if username is not None:
        pos = _put_str(out, pos, un)
    if password is not None:
        pos = _put_str(out, pos, pw)
    return out


def encode_publish(topic, payload, qos=0, retain=False, dup=False, pid=0):
    """PUBLISH as a bytearray (so a sender can set DUP in byte 0 later).
    A str payload is sent as UTF-8."""
    t = _utf8(topic, 'topic')
    if isinstance(payload, str):
        payload = payload.encode('utf-8')
    check_topic(t)
    _check_qos(qos)
    if qos:
        _check_pid(pid)
    elif dup:
        raise ValueError('DUP must be 0 for QoS 0')
    rl = 2 + len(t) + (2 if qos else 0) + len(payload)
    first = (_PUBLISH << 4) | (qos << 1) | (_DUP if dup else 0) | (_RETAIN if retain else 0)
    out, pos = _start(first, rl)
    pos = _put_str(out, pos, t)
    if qos:
        pos = _put_u16(out, pos, pid)
    out[pos:pos + len(payload)] = payload
    return out


def encode_ack(type, pid):
    """PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK (type) for pid."""
    _check_pid(pid)
    return bytes((type << 4 | _REQUIRED_FLAGS[type], 2, pid >> 8, pid & 0xFF))


def encode_puback(pid):
    return encode_ack(_PUBACK, pid)


def encode_subscribe(pid, filters):
    """SUBSCRIBE for a list of (filter, qos)."""
    _check_pid(pid)
    if not filters:
        raise ValueError('SUBSCRIBE needs at least one filter')
    encoded = []
    rl = 2
    for f, qos in filters:
        f = _utf8(f, 'topic filter')
        check_filter(f)
        _check_qos(qos)
        encoded.append((f, qos))
        rl += 3 + len(f)
    out, pos = _start(_SUBSCRIBE << 4 | 2, rl)
    pos = _put_u16(out, pos, pid)
    for f, qos in encoded:
        pos = _put_str(out, pos, f)
        out[pos] = qos
        pos += 1
    return out


def encode_unsubscribe(pid, filters):
    _check_pid(pid)
    if not filters:
        raise ValueError('UNSUBSCRIBE needs at least one filter')
    encoded = []
    rl = 2
    for f in filters:
        f = _utf8(f, 'topic filter')
        check_filter(f)
        encoded.append(f)
        rl += 2 + len(f)
    out, pos = _start(_UNSUBSCRIBE << 4 | 2, rl)
    pos = _put_u16(out, pos, pid)
    for f in encoded:
        pos = _put_str(out, pos, f)
    return out


# ---------------------------------------------------------------- decoding

def _u16(data, pos, end, what):
    if pos + 2 > end:
        raise MqttError('truncated %s' % what)
    return (data[pos] << 8) | data[pos + 1], pos + 2


def _string(data, pos, end, what):
    n, pos = _u16(data, pos, end, what)
    if pos + n > end:
        raise MqttError('truncated %s' % what)
    try:
        s = str(data[pos:pos + n], 'utf-8')
    except UnicodeError:
        raise MqttError(what + ' is not valid UTF-8')
    if '\x00' in s:
        raise MqttError(what + ' contains U+0000')
    return s, pos + n


def _pid(data, pos, end, what):
    # what: 'PUBLISH packet identifier', ...
    pid, pos = _u16(data, pos, end, what)
    if pid == 0:
        raise MqttError(what + ' is 0')
    return pid, pos


def check_first_byte(first):
    """Raise MqttError if a fixed header's first byte is invalid."""
    ptype = first >> 4
    need = _REQUIRED_FLAGS[ptype]
    if need == 0xFF:
        if ptype != _PUBLISH:
            raise MqttError('reserved packet type %d' % ptype)
        if first & 0x06 == 0x06:
            raise MqttError('PUBLISH with QoS 3')
    elif first & 0x0F != need:
        raise MqttError('%s with invalid flags 0x%x' % (packet_name(ptype), first & 0x0F))


def decode(first, body):
    """Decode one packet from its first byte and its body (the bytes after
    the remaining length). Returns a Packet; raises MqttError."""
    check_first_byte(first)
    ptype = first >> 4
    p = Packet(ptype, first & 0x0F)
    mv = memoryview(body)
    end = len(mv)
    if ptype == _PUBLISH:
        _publish_flags(p, first)
        pos = _publish_head(p, mv, 0, end)
        p.payload = bytes(mv[pos:end])
    elif ptype in (_PUBACK, _PUBREC, _PUBREL, _PUBCOMP, _UNSUBACK):
        if end != 2:
            raise MqttError('%s remaining length %d, not 2' % (packet_name(ptype), end))
        p.pid = (mv[0] << 8) | mv[1]
        if not p.pid:
            raise MqttError('%s packet identifier is 0' % packet_name(ptype))
    elif ptype in (_PINGREQ, _PINGRESP, _DISCONNECT):
        if end:
            raise MqttError('%s remaining length %d, not 0' % (packet_name(ptype), end))
    elif ptype == _CONNACK:
        if end != 2:
            raise MqttError('CONNACK remaining length %d, not 2' % end)
        if mv[0] & 0xFE:
            raise MqttError('CONNACK reserved flag bits set')
        p.session_present = bool(mv[0] & 1)
        p.return_code = mv[1]
        if p.return_code and p.session_present:
            raise MqttError('refused CONNACK with session present')
    elif ptype == _SUBACK:
        p.pid, pos = _pid(mv, 0, end, 'SUBACK packet identifier')
        if pos == end:
            raise MqttError('SUBACK without return codes')
        p.codes = list(mv[pos:end])
        for c in p.codes:
            if c > 2 and c != _SUBACK_FAILURE:
                raise MqttError('SUBACK return code 0x%x' % c)
    else:   # CONNECT, SUBSCRIBE, UNSUBSCRIBE: only a broker takes them
        from . import mqtt_broker
        mqtt_broker.decode(p, mv, end)
    return p


def _publish_flags(p, first):
    p.qos = (first >> 1) & 3
    p.dup = bool(first & _DUP)
    p.retain = bool(first & _RETAIN)
    if p.dup and not p.qos:
        raise MqttError('PUBLISH QoS 0 with DUP set')


def _publish_head(p, data, pos, end):
    """Read a PUBLISH's topic and (QoS > 0) packet id at data[pos:end] into p; the
    position after them."""
    p.topic, pos = _string(data, pos, end, 'PUBLISH topic')
    if not p.topic or '+' in p.topic or '#' in p.topic:
        raise MqttError('PUBLISH topic empty or with a wildcard')
    if p.qos:
        p.pid, pos = _pid(data, pos, end, 'PUBLISH packet identifier')
    return pos


class StreamParser:
    """Turn arbitrary TCP chunks into whole packets.

    feed(chunk) returns an iterator of Packets; a partial packet stays
    buffered for the next chunk. A header announcing more than max_packet
    bytes fails at once (a protocol error), so the buffer never holds more than
    one partial packet of at most max_packet bytes (plus the unparsed rest of
    the last chunk); but a PUBLISH that long is skipped, not refused: its topic and
    packet id are read (a topic itself over the limit is skipped too) and its
    payload is discarded as it arrives, never buffered, and once it has all
    passed the parser gives a PUBLISH Packet with `oversized` set to its size
    and no payload (MQTT 3.1.1 cannot refuse one PUBLISH, and one that closed
    the connection would come back after every reconnect). After a MqttError
    the parser is reset; the connection is dead.
    """

    def __init__(self, max_packet=_DEFAULT_MAX_PACKET):
        self.max_packet = max_packet
        self.reset()

    def reset(self):
        self._buf = bytearray()
        self._pos = 0
        self._big = None   # the oversized PUBLISH being skipped (a Packet)
        self._left = 0     # its remaining-length bytes not taken yet
        self._skip = 0     # bytes of it to discard before its next step
        self._step = 0     # 0: topic (and packet id); 1: packet id; 2: skipped whole

    def buffered(self):
        """Bytes held that do not yet form a whole packet."""
        return len(self._buf) - self._pos

    def feed(self, data):
        self.add(data)
        return self._packets()

    def add(self, data):
        """Take a chunk; next_packet() then gives its packets one by one."""
        if self._pos:
            self._buf[:self._pos] = b''
            self._pos = 0
        skip = self._skip
        if skip:   # an oversized PUBLISH's bytes (nothing else is buffered): not copied
            n = len(data)
            if n <= skip:
                self._skip = skip - n
                self._left -= n
                return
            self._skip = 0
            self._left -= skip
            data = memoryview(data)[skip:]
        self._buf.extend(data)

    def _packets(self):
        while True:
            p = self.next_packet()
            if p is None:
                return
            yield p

    def next_packet(self):
        """The next whole packet taken, or None (no generator: a board's client
        calls this per chunk)."""
        try:
            if self._big is not None:
                return self._skipping()
            buf = self._buf
            pos = self._pos
            end = len(buf)
            if pos >= end:
                return None
            first = buf[pos]
            check_first_byte(first)
            rl, body = decode_varint(buf, pos + 1, end)
            if rl < 0:
                return None
            total = body - pos + rl
            if total > self.max_packet:
                if first >> 4 != _PUBLISH:
                    raise MqttError('packet of %d bytes exceeds the maximum of %d'
                                    % (total, self.max_packet))
                p = Packet(_PUBLISH, first & 0x0F)
                _publish_flags(p, first)
                p.oversized = total
                self._big = p
                self._left = rl
                self._step = 0
                self._pos = body
                return self._skipping()
            if body + rl > end:
                return None
            p = decode(first, memoryview(buf)[body:body + rl])
            self._pos = body + rl
            return p
        except MqttError:
            self.reset()
            raise

    def _skipping(self):
        # the oversized PUBLISH's next step, as far as the bytes held allow
        p = self._big
        buf = self._buf
        while True:
            pos = self._pos
            have = len(buf) - pos
            n = self._skip
            if n:
                if have < n:
                    n = have
                self._skip -= n
                self._take(pos + n)
                if self._skip:
                    return None
                continue
            pid = 2 if p.qos else 0
            if self._step == 0:
                if have < 2:
                    return None
                head = 2 + ((buf[pos] << 8) | buf[pos + 1]) + pid
                if head > self._left:
                    raise MqttError('truncated PUBLISH topic')
                if head <= self.max_packet:
                    if have < head:
                        return None
                    _publish_head(p, memoryview(buf), pos, pos + head)
                    self._take(pos + head)
                    self._skip = self._left
                    self._step = 2
                else:   # the topic alone is over the limit: skipped, the packet id kept
                    self._take(pos + 2)
                    self._skip = head - 2 - pid
                    self._step = 1
            elif self._step == 1:
                if have < pid:
                    return None
                if pid:
                    p.pid, _ = _pid(buf, pos, pos + 2, 'PUBLISH packet identifier')
                self._take(pos + pid)
                self._skip = self._left
                self._step = 2
            else:
                self._big = None
                return p

    def _take(self, pos):
        self._left -= pos - self._pos
        self._pos = pos


# ---------------------------------------------------------------- topics

def check_topic(topic):
    """Raise ValueError unless topic (str or bytes) is a valid topic name."""
    if isinstance(topic, str):
        topic = topic.encode('utf-8')
    if not topic:
        raise ValueError('empty topic')
    if b'+' in topic or b'#' in topic or b'\x00' in topic:
        raise ValueError('topic name with a wildcard or U+0000')


def check_filter(f):
    """Raise ValueError unless f (str or bytes) is a valid topic filter."""
    if isinstance(f, str):
        f = f.encode('utf-8')
    n = len(f)
    if not n or b'\x00' in f:
        raise ValueError('empty topic filter or U+0000')
    for i in range(n):
        c = f[i]
        if c == 0x23:  # '#'
            if i != n - 1 or (i and f[i - 1] != 0x2F):
                raise ValueError("'#' must be the last level of a filter")
        elif c == 0x2B:  # '+'
            if (i and f[i - 1] != 0x2F) or (i + 1 < n and f[i + 1] != 0x2F):
                raise ValueError("'+' must fill a whole filter level")
