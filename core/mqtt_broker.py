"""The broker's side of the MQTT 3.1.1 codec: CONNECT, SUBSCRIBE and UNSUBSCRIBE decoded,
CONNACK, SUBACK and UNSUBACK encoded, and topic-filter matching. Portable, no I/O.

A client never sends or takes these (a board's client refuses any it is sent), so a
board does not load this module: core.mqtt.decode() imports it for a packet only a broker
takes, and core.mqtt reads the names here as its own (`mqtt.encode_suback`, for the
bridge's brokers, test doubles and tools).
"""
from .compat import const
from .mqtt import MqttError, encode_ack, _check_pid, _start, _put_u16, _u16, _string, _pid

# core/mqtt_numbers' numbers, copied: no global slot holds them
_CONNACK = const(2)
_SUBSCRIBE = const(8)
_SUBACK = const(9)
_UNSUBSCRIBE = const(10)
_UNSUBACK = const(11)


def encode_connack(session_present, return_code):
    return bytes((_CONNACK << 4, 2, 1 if session_present else 0, return_code))


def encode_suback(pid, codes):
    _check_pid(pid)
    out, pos = _start(_SUBACK << 4, 2 + len(codes))
    pos = _put_u16(out, pos, pid)
    out[pos:pos + len(codes)] = bytes(codes)
    return out


def encode_unsuback(pid):
    return encode_ack(_UNSUBACK, pid)


def decode(p, mv, end):
    """Decode the body mv[:end] of a CONNECT, SUBSCRIBE or UNSUBSCRIBE into p (a
    core.mqtt.Packet of that type); raises MqttError."""
    if p.type == _SUBSCRIBE:
        p.pid, pos = _pid(mv, 0, end, 'SUBSCRIBE packet identifier')
        p.filters = []
        while pos < end:
            f, pos = _string(mv, pos, end, 'SUBSCRIBE filter')
            if pos >= end:
                raise MqttError('SUBSCRIBE filter without QoS')
            q = mv[pos]
            pos += 1
            if q > 2:
                raise MqttError('SUBSCRIBE QoS byte 0x%x' % q)
            p.filters.append((f, q))
        if not p.filters:
            raise MqttError('SUBSCRIBE without filters')
    elif p.type == _UNSUBSCRIBE:
        p.pid, pos = _pid(mv, 0, end, 'UNSUBSCRIBE packet identifier')
        p.filters = []
        while pos < end:
            f, pos = _string(mv, pos, end, 'UNSUBSCRIBE filter')
            p.filters.append(f)
        if not p.filters:
            raise MqttError('UNSUBSCRIBE without filters')
    else:
        _decode_connect(p, mv, end)


def _binary(mv, pos, end, what):
    n, pos = _u16(mv, pos, end, what)
    if pos + n > end:
        raise MqttError('truncated %s' % what)
    return bytes(mv[pos:pos + n]), pos + n


def _decode_connect(p, mv, end):
    name, pos = _string(mv, 0, end, 'protocol name')
    if name != 'MQTT':
        raise MqttError('protocol name %r' % name)
    if pos + 4 > end:
        raise MqttError('truncated CONNECT header')
    if mv[pos] != 4:
        raise MqttError('protocol level %d' % mv[pos])
    flags = mv[pos + 1]
    if flags & 1:
        raise MqttError('CONNECT reserved flag set')
    p.keepalive = (mv[pos + 2] << 8) | mv[pos + 3]
    pos += 4
    p.clean_session = bool(flags & 0x02)
    p.client_id, pos = _string(mv, pos, end, 'client id')
    if flags & 0x04:
        p.will_qos = (flags >> 3) & 3
        if p.will_qos == 3:
            raise MqttError('will QoS 3')
        p.will_retain = bool(flags & 0x20)
        p.will_topic, pos = _string(mv, pos, end, 'will topic')
        p.will_payload, pos = _binary(mv, pos, end, 'will message')
    elif flags & 0x38:
        raise MqttError('will QoS/retain without will flag')
    if flags & 0x80:
        p.username, pos = _string(mv, pos, end, 'user name')
    if flags & 0x40:
        if not flags & 0x80:
            raise MqttError('password without user name')
        p.password, pos = _binary(mv, pos, end, 'password')
    if pos != end:
        raise MqttError('%d trailing bytes after CONNECT payload' % (end - pos))


def topic_matches(filt, topic):
    """True if topic name matches the (valid) topic filter; '+' matches one
    level, '#' the rest; wildcard-first filters skip topics starting '$'."""
    fl = len(filt)
    tl = len(topic)
    if tl and topic[0] == '$' and fl and filt[0] in '+#':
        return False
    f = 0
    t = 0
    while f < fl:
        c = filt[f]
        if c == '#':
            return True
        if c == '+':
            while t < tl and topic[t] != '/':
                t += 1
            f += 1
            continue
        if t >= tl:
            # "a/#" also matches "a" (the parent level)
            return t == tl and filt[f:] == '/#'
        if topic[t] != c:
            return False
        f += 1
        t += 1
    return t == tl
