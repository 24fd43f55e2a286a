"""MQTT 3.1.1 codec: byte-exact vectors derived by hand from the spec, the
stream parser under every split, malformed input, topic matching.
Portable: runs under CPython (pytest) and MicroPython."""
from spot.core.mqtt import (
    MqttError, StreamParser, decode, encode_varint, decode_varint,
    encode_connect, encode_connack, encode_publish, encode_puback,
    encode_subscribe, encode_suback, encode_unsubscribe, encode_unsuback,
    PINGREQ_PACKET, PINGRESP_PACKET, DISCONNECT_PACKET, topic_matches,
    check_filter, check_topic, CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE,
    SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT)


def h(text):
    """Hex with spaces and '|' separators allowed, for readable vectors."""
    return bytes.fromhex(text.replace(' ', '').replace('|', ''))


def raises_mqtt(data, max_packet=16384):
    """Feed data; return the MqttError message (fails if none is raised)."""
    p = StreamParser(max_packet)
    try:
        list(p.feed(data))
    except MqttError as e:
        assert p.buffered() == 0  # parser reset, connection to be closed
        return str(e)
    assert False, 'no MqttError for %r' % (data,)


def raises_value(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    assert False, 'no ValueError'


def parse_all(data):
    return list(StreamParser().feed(data))


# ------------------------------------------------------------ remaining length

def test_remaining_length_spec_table():
    # MQTT 3.1.1 table 2.4 boundaries
    cases = ((0, '00'), (127, '7f'), (128, '80 01'), (16383, 'ff 7f'),
             (16384, '80 80 01'), (2097151, 'ff ff 7f'),
             (2097152, '80 80 80 01'), (268435455, 'ff ff ff 7f'))
    for value, enc in cases:
        assert encode_varint(value) == h(enc)
        assert decode_varint(h(enc)) == (value, len(h(enc)))


def test_remaining_length_incomplete_asks_for_more():
    assert decode_varint(h('80 80'))[0] == -1


def test_remaining_length_over_four_bytes_rejected_without_fifth_byte():
    msg = raises_mqtt(h('30 ff ff ff ff'))
    assert '4 bytes' in msg


def test_remaining_length_above_max_not_encodable():
    raises_value(encode_varint, 268435456)


# ------------------------------------------------------------ vectors

CONNECT_SPOT1_WILL = h(
    '10 2d'                          # CONNECT, remaining length 45
    '| 00 04 4d 51 54 54 | 04'       # "MQTT", level 4
    '| 2e'                           # will retain, will QoS 1, will, clean
    '| 00 3c'                        # keep-alive 60 s
    '| 00 05 73 70 6f 74 31'         # client id "spot1"
    '| 00 11 73 70 6f 74 2f 73 70 6f 74 31 2f 73 74 61 74 75 73'  # spot/spot1/status
    '| 00 07 6f 66 66 6c 69 6e 65')  # "offline"


def test_connect_spot1_with_will_vector():
    got = encode_connect('spot1', 60, True, 'spot/spot1/status', b'offline', 1, True)
    assert bytes(got) == CONNECT_SPOT1_WILL


def test_connect_minimal_vector():
    assert bytes(encode_connect('spot1', 60)) == h(
        '10 11 | 00 04 4d 51 54 54 | 04 | 02 | 00 3c | 00 05 73 70 6f 74 31')


def test_connect_persistent_session_with_credentials_vector():
    got = encode_connect('d', 0, False, username='u', password=b'pw')
    assert bytes(got) == h(
        '10 14 | 00 04 4d 51 54 54 | 04 | c0 | 00 00 | 00 01 64'
        '| 00 01 75 | 00 02 70 77')


def test_connect_decodes_back():
    p = parse_all(CONNECT_SPOT1_WILL)[0]
    assert p.type == CONNECT
    assert (p.client_id, p.keepalive, p.clean_session) == ('spot1', 60, True)
    assert (p.will_topic, p.will_payload, p.will_qos, p.will_retain) == (
        'spot/spot1/status', b'offline', 1, True)
    assert p.username is None and p.password is None


def test_connect_password_without_user_rejected():
    raises_value(encode_connect, 'd', 60, True, None, b'', 0, False, None, 'pw')


def test_connack_vectors():
    assert encode_connack(False, 0) == h('20 02 00 00')
    assert encode_connack(True, 0) == h('20 02 01 00')
    p = parse_all(h('20 02 01 00'))[0]
    assert p.type == CONNACK and p.session_present and p.return_code == 0
    p = parse_all(h('20 02 00 05'))[0]
    assert not p.session_present and p.return_code == 5


def test_publish_qos0_vector():
    assert bytes(encode_publish('a/b', b'hi')) == h('30 07 | 00 03 61 2f 62 | 68 69')


def test_publish_qos1_retain_vector():
    got = encode_publish('a/b', b'hi', qos=1, retain=True, pid=10)
    assert bytes(got) == h('33 09 | 00 03 61 2f 62 | 00 0a | 68 69')


def test_publish_dup_vector():
    got = encode_publish('a/b', b'hi', qos=1, dup=True, pid=10)
    assert bytes(got) == h('3a 09 | 00 03 61 2f 62 | 00 0a | 68 69')


def test_publish_decodes_fields():
    p = parse_all(h('3b 09 | 00 03 61 2f 62 | 00 0a | 68 69'))[0]
    assert p.type == PUBLISH
    assert (p.topic, p.payload, p.qos, p.retain, p.dup, p.pid) == (
        'a/b', b'hi', 1, True, True, 10)


def test_publish_two_byte_remaining_length():
    payload = bytes(range(200)) * 1
    got = encode_publish('t', payload)
    # remaining length 2 + 1 + 200 = 203 -> cb 01
    assert bytes(got[:6]) == h('30 cb 01 00 01 74')
    assert len(got) == 3 + 203
    assert parse_all(got)[0].payload == payload


def test_publish_empty_payload():
    p = parse_all(encode_publish('a', b''))[0]
    assert p.payload == b'' and p.topic == 'a'


def test_spot_sized_publish_overhead_is_19_bytes():
    # a 32-byte CBOR frame on "spot/hp1/tele" at QoS 1: 1 type byte,
    # 1 length byte, 2+13 topic, 2 packet id
    frame = bytes(32)
    got = encode_publish('spot/hp1/tele', frame, qos=1, pid=1)
    assert len(got) == 51
    assert len(got) - len(frame) == 19


def test_publish_rejects_wildcard_topic_and_bad_qos():
    raises_value(encode_publish, 'a/+', b'')
    raises_value(encode_publish, 'a/#', b'')
    raises_value(encode_publish, '', b'')
    raises_value(encode_publish, 'a', b'', 3)
    raises_value(encode_publish, 'a', b'', 1, False, False, 0)  # QoS 1 needs a pid


def test_puback_vector():
    assert encode_puback(10) == h('40 02 00 0a')
    p = parse_all(h('40 02 00 0a'))[0]
    assert p.type == PUBACK and p.pid == 10


def test_subscribe_vector():
    got = encode_subscribe(1, [('spot/+/cmd', 1)])
    assert bytes(got) == h('82 0f | 00 01 | 00 0a 73 70 6f 74 2f 2b 2f 63 6d 64 | 01')
    p = parse_all(got)[0]
    assert p.type == SUBSCRIBE and p.pid == 1 and p.filters == [('spot/+/cmd', 1)]


def test_suback_vector():
    assert bytes(encode_suback(1, [1, 0x80])) == h('90 04 00 01 01 80')
    p = parse_all(h('90 04 00 01 01 80'))[0]
    assert p.type == SUBACK and p.pid == 1 and p.codes == [1, 0x80]


def test_unsubscribe_and_unsuback_vectors():
    got = encode_unsubscribe(2, ['a/#'])
    assert bytes(got) == h('a2 07 | 00 02 | 00 03 61 2f 23')
    p = parse_all(got)[0]
    assert p.type == UNSUBSCRIBE and p.filters == ['a/#']
    assert encode_unsuback(2) == h('b0 02 00 02')
    assert parse_all(h('b0 02 00 02'))[0].type == UNSUBACK


def test_ping_and_disconnect_vectors():
    assert PINGREQ_PACKET == h('c0 00')
    assert PINGRESP_PACKET == h('d0 00')
    assert DISCONNECT_PACKET == h('e0 00')
    types = [p.type for p in parse_all(PINGREQ_PACKET + PINGRESP_PACKET + DISCONNECT_PACKET)]
    assert types == [PINGREQ, PINGRESP, DISCONNECT]


def test_utf8_topic_round_trip():
    p = parse_all(encode_publish('spot/k\u00f8kken/\u00b0C', b'1'))[0]
    assert p.topic == 'spot/k\u00f8kken/\u00b0C'


# ------------------------------------------------------------ stream parser

STREAM = (bytes(encode_connack(False, 0))
          + bytes(encode_publish('spot/a', b'\x00\x01\x02', 1, False, False, 7))
          + bytes(encode_suback(3, [1]))
          + PINGRESP_PACKET
          + bytes(encode_publish('b', bytes(130), 0, True))  # 2-byte length
          + h('40 02 00 07'))


def summary(packets):
    return [(p.type, p.pid, p.topic, p.payload, p.retain) for p in packets]


def test_parser_whole_stream_in_one_chunk():
    got = summary(parse_all(STREAM))
    assert [g[0] for g in got] == [CONNACK, PUBLISH, SUBACK, PINGRESP, PUBLISH, PUBACK]
    assert got[1] == (PUBLISH, 7, 'spot/a', b'\x00\x01\x02', False)
    assert got[4] == (PUBLISH, 0, 'b', bytes(130), True)


def test_parser_split_at_every_byte_boundary():
    expected = summary(parse_all(STREAM))
    for i in range(len(STREAM) + 1):
        p = StreamParser()
        got = list(p.feed(STREAM[:i]))
        got += list(p.feed(STREAM[i:]))
        assert summary(got) == expected, i
        assert p.buffered() == 0


def test_parser_split_at_every_pair_of_boundaries():
    data = STREAM[:40]  # the first three packets
    expected = summary(parse_all(data))
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1):
            p = StreamParser()
            got = list(p.feed(data[:i])) + list(p.feed(data[i:j])) + list(p.feed(data[j:]))
            assert summary(got) == expected, (i, j)


def test_parser_one_byte_at_a_time():
    p = StreamParser()
    got = []
    for i in range(len(STREAM)):
        got += list(p.feed(STREAM[i:i + 1]))
    assert summary(got) == summary(parse_all(STREAM))


def test_parser_keeps_partial_packet():
    p = StreamParser()
    assert list(p.feed(STREAM[:5])) != []  # CONNACK whole, PUBLISH partial
    assert p.buffered() == 1
    assert list(p.feed(b'')) == []
    assert p.buffered() == 1


def test_parser_yields_good_packets_before_garbage():
    p = StreamParser()
    it = p.feed(PINGRESP_PACKET + h('f0 00'))
    assert next(it).type == PINGRESP
    try:
        next(it)
        assert False, 'garbage accepted'
    except MqttError:
        pass
    assert p.buffered() == 0


def test_parser_next_packet_gives_the_packets_of_added_chunks_one_by_one():
    p = StreamParser()
    p.add(STREAM[:5])
    first = p.next_packet()
    assert first is not None and p.next_packet() is None   # the PUBLISH is partial
    p.add(STREAM[5:])
    rest = []
    while True:
        q = p.next_packet()
        if q is None:
            break
        rest.append(q)
    assert summary([first] + rest) == summary(parse_all(STREAM))
    assert p.buffered() == 0


def test_parser_next_packet_resets_after_garbage():
    p = StreamParser()
    p.add(PINGRESP_PACKET + h('f0 00'))
    assert p.next_packet().type == PINGRESP
    try:
        p.next_packet()
        assert False, 'garbage accepted'
    except MqttError:
        pass
    assert p.buffered() == 0


def test_parser_rejects_oversized_before_body_arrives():
    # a SUBACK announcing a 1000-byte body; max packet 256; only the header is there
    msg = raises_mqtt(h('90 e8 07'), max_packet=256)
    assert msg == 'packet of 1003 bytes exceeds the maximum of 256'


def chunked(parser, data, size):
    """Feed data in chunks of size bytes; (packets, most bytes held after a chunk)."""
    got = []
    held = 0
    for i in range(0, len(data), size):
        got += list(parser.feed(data[i:i + size]))
        held = max(held, parser.buffered())
    return got, held


BIG = bytes(encode_publish('spot/v1/hp-1/10/down', bytes(range(256)) * 20, 1, False, True, 9))


def test_parser_skips_an_oversized_publish_split_across_many_chunks_then_parses_the_next():
    stream = BIG + PINGRESP_PACKET + bytes(encode_publish('a', b'ok', 1, False, False, 10))
    got, held = chunked(StreamParser(256), stream, 7)
    assert [(q.type, q.pid, q.topic) for q in got] == [
        (PUBLISH, 9, 'spot/v1/hp-1/10/down'), (PINGRESP, 0, None), (PUBLISH, 10, 'a')]
    big = got[0]
    assert (big.oversized, big.payload, big.qos, big.dup) == (len(BIG), b'', 1, True)
    assert got[2].oversized == 0 and got[2].payload == b'ok'
    assert held < 256    # the payload was never held


def test_parser_gives_an_oversized_publish_only_when_all_of_it_has_passed():
    p = StreamParser(256)
    assert list(p.feed(BIG[:-1])) == []
    assert p.buffered() == 0
    assert [q.pid for q in p.feed(BIG[-1:])] == [9]


def test_parser_skips_an_oversized_publish_at_every_split_of_two_chunks():
    pkt = bytes(encode_publish('spot/x', bytes(300), 1, False, False, 5))
    stream = pkt + PINGRESP_PACKET
    for i in range(len(stream) + 1):
        p = StreamParser(64)
        got = list(p.feed(stream[:i])) + list(p.feed(stream[i:]))
        assert [(q.type, q.pid, q.topic, q.oversized) for q in got] == [
            (PUBLISH, 5, 'spot/x', len(pkt)), (PINGRESP, 0, None, 0)], i
        assert p.buffered() == 0


def test_parser_skips_an_oversized_publish_fed_a_byte_at_a_time():
    pkt = bytes(encode_publish('spot/x', bytes(300)))
    got, held = chunked(StreamParser(64), pkt + PINGRESP_PACKET, 1)
    assert [(q.type, q.pid, q.topic, q.oversized) for q in got] == [
        (PUBLISH, 0, 'spot/x', len(pkt)), (PINGRESP, 0, None, 0)]
    assert held < 64


def test_parser_skips_a_topic_longer_than_the_maximum_and_keeps_the_packet_id():
    pkt = bytes(encode_publish('t/' + 'x' * 500, b'body', 1, False, False, 77))
    got, held = chunked(StreamParser(64), pkt + PINGRESP_PACKET, 10)
    assert [(q.type, q.pid, q.topic, q.oversized) for q in got] == [
        (PUBLISH, 77, None, len(pkt)), (PINGRESP, 0, None, 0)]
    assert held < 64


def test_parser_refuses_an_oversized_publish_whose_topic_runs_past_its_end():
    # remaining length 300, topic length 0x0200
    assert raises_mqtt(h('30 ac 02 02 00') + bytes(298), max_packet=64) == (
        'truncated PUBLISH topic')


def test_parser_refuses_an_oversized_publish_with_a_wildcard_topic():
    pkt = bytes(encode_publish('a/b', bytes(100)))
    pkt = pkt[:6] + b'#' + pkt[7:]    # 'a/#'
    assert 'wildcard' in raises_mqtt(pkt, max_packet=64)


def test_parser_refuses_an_oversized_qos0_publish_with_dup():
    assert 'DUP' in raises_mqtt(h('38 e8 07 00 01 61'), max_packet=64)


def test_parser_accepts_packet_of_exactly_max_size():
    pkt = encode_publish('t', bytes(250))  # 1 + 2 + 253 = 256 bytes
    assert len(pkt) == 256
    p = StreamParser(256)
    assert len(list(p.feed(pkt))) == 1


# ------------------------------------------------------------ malformed

def test_reserved_packet_types_rejected():
    assert 'reserved' in raises_mqtt(h('00 00'))
    assert 'reserved' in raises_mqtt(h('f0 00'))


def test_wrong_fixed_header_flags_rejected():
    raises_mqtt(h('41 02 00 01'))      # PUBACK with flags 1
    raises_mqtt(h('80 05 00 01 00 00 00'))  # SUBSCRIBE without flags 0010
    raises_mqtt(h('d1 00'))            # PINGRESP with a flag
    raises_mqtt(h('22 02 00 00'))      # CONNACK with flags
    raises_mqtt(h('a0 05 00 01 00 01 61'))  # UNSUBSCRIBE without 0010


def test_publish_qos3_rejected():
    assert 'QoS 3' in raises_mqtt(h('36 05 00 01 61 00 01'))


def test_publish_qos0_with_dup_rejected():
    raises_mqtt(h('38 03 00 01 61'))


def test_truncated_publish_topic_rejected():
    assert 'truncated' in raises_mqtt(h('30 03 00 05 61'))


def test_publish_qos1_without_room_for_pid_rejected():
    assert 'truncated' in raises_mqtt(h('32 04 00 02 61 62'))


def test_publish_pid_zero_rejected():
    raises_mqtt(h('32 05 00 01 61 00 00'))


def test_publish_topic_wildcard_rejected():
    raises_mqtt(h('30 03 00 01 23'))
    raises_mqtt(h('30 02 00 00'))       # empty topic


def test_publish_topic_invalid_utf8_rejected():
    assert 'UTF-8' in raises_mqtt(h('30 03 00 01 ff'))


def test_publish_topic_with_nul_rejected():
    raises_mqtt(h('30 05 00 03 61 00 62'))


def test_fixed_size_packets_with_wrong_length_rejected():
    raises_mqtt(h('40 03 00 01 00'))    # PUBACK 3
    raises_mqtt(h('40 01 00'))          # PUBACK 1
    raises_mqtt(h('20 03 00 00 00'))    # CONNACK 3
    raises_mqtt(h('d0 01 00'))          # PINGRESP 1
    raises_mqtt(h('b0 00'))             # UNSUBACK 0


def test_connack_reserved_bits_rejected():
    raises_mqtt(h('20 02 02 00'))


def test_suback_bad_return_code_rejected():
    raises_mqtt(h('90 03 00 01 03'))
    raises_mqtt(h('90 02 00 01'))       # no return codes


def test_connect_wrong_protocol_rejected():
    raises_mqtt(h('10 0c 00 04 4d 51 54 54 05 02 00 3c 00 00'))  # level 5
    raises_mqtt(h('10 0c 00 04 4d 51 54 58 04 02 00 3c 00 00'))  # "MQTX"
    raises_mqtt(h('10 0c 00 04 4d 51 54 54 04 03 00 3c 00 00'))  # reserved bit


def test_decode_garbage_never_raises_other_errors():
    # every 3-byte sequence starting with each first byte: MqttError or ok
    for first in range(256):
        for second in (0, 1, 2, 3, 0x7f, 0x80, 0xff):
            for third in (0, 1, 0x23, 0xff):
                p = StreamParser(64)
                try:
                    list(p.feed(bytes((first, second, third, 0, 1, 0x61))))
                except MqttError:
                    pass


def test_decode_helper_on_memoryview():
    body = memoryview(h('00 03 61 2f 62 68 69'))
    p = decode(0x30, body)
    assert p.topic == 'a/b' and p.payload == b'hi'


# ------------------------------------------------------------ topics

def test_topic_matching_spec_examples():
    m = topic_matches
    assert m('sport/tennis/player1/#', 'sport/tennis/player1')
    assert m('sport/tennis/player1/#', 'sport/tennis/player1/ranking')
    assert m('sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon')
    assert m('sport/#', 'sport')
    assert m('#', 'sport/tennis')
    assert m('sport/tennis/+', 'sport/tennis/player1')
    assert not m('sport/tennis/+', 'sport/tennis/player1/ranking')
    assert not m('sport/tennis/+', 'sport/tennis')
    assert m('sport/+', 'sport/')
    assert not m('sport/+', 'sport')
    assert m('+/+', '/finance')
    assert m('/+', '/finance')
    assert not m('+', '/finance')
    assert m('+', 'finance')


def test_topic_matching_exact_and_prefixes():
    assert topic_matches('a/b', 'a/b')
    assert not topic_matches('a/b', 'a/bc')
    assert not topic_matches('a/bc', 'a/b')
    assert not topic_matches('a/b', 'a')
    assert topic_matches('a/+/c', 'a/x/c')
    assert not topic_matches('a/+/c', 'a/x/d')


def test_wildcards_do_not_match_dollar_topics():
    assert not topic_matches('#', '$SYS/broker')
    assert not topic_matches('+/broker', '$SYS/broker')
    assert topic_matches('$SYS/#', '$SYS/broker')


def test_filter_and_topic_validation():
    for good in ('#', '+', 'a/#', '+/b/+', 'a//b', '/'):
        check_filter(good)
    for bad in ('', 'a#', 'a/#/b', 'a+', '+a/b', 'a/b+'):
        raises_value(check_filter, bad)
    check_topic('a/b')
    raises_value(check_topic, 'a/+')
