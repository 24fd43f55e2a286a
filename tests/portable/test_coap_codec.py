"""CoAP codec: byte-exact vectors derived from RFC 7252 / 7641 / 7959 and malformed input.

Portable: plain asserts, runs under CPython (pytest) and MicroPython.
"""
from _fakes import option_values
from spot.core import coap
from spot.core.coap import CoapError, CoapMessage


def h(text):
    """bytes from hex text with spaces."""
    return bytes.fromhex(text.replace(' ', ''))


def decode_error(data, **kw):
    try:
        coap.decode(data, **kw)
    except CoapError as err:
        return err
    raise AssertionError('no CoapError for %r' % (data,))


# ---- RFC vectors ------------------------------------------------------------------------

# RFC 7252 Appendix A, "Confirmable request; piggybacked response":
#   CON [0x7d34] GET /temperature  ->  ACK [0x7d34] 2.05 "22.3 C"
RFC7252_GET = h('40 01 7d 34') + b'\xbb' + b'temperature'
RFC7252_ACK = h('60 45 7d 34 ff') + b'22.3 C'


def test_rfc7252_get_request_encodes_to_exact_bytes():
    msg = CoapMessage(coap.CON, coap.GET, 0x7d34)
    msg.add(coap.URI_PATH, 'temperature')
    assert coap.encode(msg) == RFC7252_GET


def test_rfc7252_get_request_decodes():
    msg = coap.decode(RFC7252_GET)
    assert (msg.mtype, msg.code, msg.mid, msg.token) == (coap.CON, coap.GET, 0x7d34, b'')
    assert option_values(msg, coap.URI_PATH) == [b'temperature']
    assert msg.payload == b''


def test_rfc7252_piggybacked_response_roundtrip():
    msg = coap.decode(RFC7252_ACK)
    assert (msg.mtype, msg.code, msg.mid, msg.payload) == (coap.ACK, coap.CONTENT, 0x7d34,
                                                            b'22.3 C')
    assert coap.encode(msg) == RFC7252_ACK


def test_token_is_carried_in_header_and_roundtrips():
    # RFC 7252 Appendix A with token 0x20: CON [0x7d35] GET /temperature
    data = h('41 01 7d 35 20') + b'\xbb' + b'temperature'
    msg = coap.decode(data)
    assert msg.token == b'\x20'
    assert coap.encode(msg) == data
    eight = coap.encode_message(coap.NON, coap.GET, 1, b'12345678')
    assert eight[0] == 0x58 and coap.decode(eight).token == b'12345678'


def test_rfc7641_observe_registration_bytes():
    # RFC 7641 Figure 3: GET /temperature, Token 0x4a, Observe: (empty = 0)
    msg = CoapMessage(coap.CON, coap.GET, 0x1001, b'\x4a')
    msg.add(coap.URI_PATH, 'temperature')
    msg.add(coap.OBSERVE, 0)
    data = coap.encode(msg)
    assert data == h('41 01 10 01 4a 60 5b') + b'temperature'
    assert coap.decode(data).get_uint(coap.OBSERVE) == 0


def test_rfc7641_notification_bytes():
    # RFC 7641 Figure 3: 2.05 Token 0x4a Observe: 12 Max-Age: 15 "22.9 Cel"
    msg = CoapMessage(coap.NON, coap.CONTENT, 0x1002, b'\x4a', payload=b'22.9 Cel')
    msg.add(coap.MAX_AGE, 15).add(coap.OBSERVE, 12)
    data = coap.encode(msg)
    assert data == h('51 45 10 02 4a 61 0c 81 0f ff') + b'22.9 Cel'
    back = coap.decode(data)
    assert back.get_uint(coap.OBSERVE) == 12 and back.get_uint(coap.MAX_AGE) == 15


def test_rfc7959_block2_response_bytes():
    # RFC 7959 Figure 2: ACK [MID=1234] 2.05 Content, 2:0/1/128 with 128 bytes
    body = bytes(range(128))
    msg = CoapMessage(coap.ACK, coap.CONTENT, 1234, payload=body)
    msg.add(coap.BLOCK2, coap.encode_block(0, True, 3))
    data = coap.encode(msg)
    assert data == h('60 45 04 d2 d1 0a 0b ff') + body
    assert coap.decode(data).get_block(coap.BLOCK2) == (0, True, 3)


def test_rfc7959_last_block_value():
    # 2:2/0/128 -> (2 << 4) | 3 = 0x23
    assert coap.encode_block(2, False, 3) == b'\x23'
    assert coap.decode_block(b'\x23') == (2, False, 3)
    # block 300 needs two bytes
    assert coap.decode_block(coap.encode_block(300, True, 6)) == (300, True, 6)
    assert coap.encode_block(0, False, 0) == b''


def test_block_sizes():
    assert [coap.block_size(s) for s in range(7)] == [16, 32, 64, 128, 256, 512, 1024]


# ---- option encoding ------------------------------------------------------------------

def test_option_delta_13_extension():
    msg = CoapMessage(coap.CON, coap.PUT, 2)
    msg.add(coap.SIZE1, 5000)           # delta 60 -> nibble 13, ext 47
    assert coap.encode(msg) == h('40 03 00 02 d2 2f 13 88')
    assert coap.decode(coap.encode(msg)).get_uint(coap.SIZE1) == 5000


def test_option_delta_14_extension():
    msg = CoapMessage(coap.NON, coap.GET, 3)
    msg.add(2050, b'x')                 # delta 2050 -> nibble 14, ext 1781 = 0x06f5
    data = coap.encode(msg)
    assert data == h('50 01 00 03 e1 06 f5 78')
    assert coap.decode(data).get(2050) == b'x'


def test_option_length_extensions():
    short = 'a' * 20                    # length 20 -> nibble 13, ext 7
    long = 'b' * 300                    # length 300 -> nibble 14, ext 31
    msg = CoapMessage(coap.CON, coap.GET, 4)
    msg.add(coap.URI_PATH, short).add(coap.PROXY_URI, long)
    data = coap.encode(msg)
    assert data[4:6] == h('bd 07') and data[26:30] == h('de 0b 00 1f')
    back = coap.decode(data)
    assert back.get(coap.URI_PATH) == short.encode()
    assert back.get(coap.PROXY_URI) == long.encode()


def test_repeatable_options_keep_their_order():
    msg = CoapMessage(coap.CON, coap.GET, 5)
    coap.set_uri(msg, '/spot/7/frame', ['a=1', 'b=2'])
    data = coap.encode(msg)
    back = coap.decode(data)
    assert option_values(back, coap.URI_PATH) == [b'spot', b'7', b'frame']
    assert option_values(back, coap.URI_QUERY) == [b'a=1', b'b=2']


def test_add_keeps_options_sorted_and_stable():
    msg = CoapMessage(coap.CON, coap.GET, 6)
    msg.add(coap.URI_QUERY, 'q').add(coap.URI_PATH, 'a').add(coap.OBSERVE, 0)
    msg.add(coap.URI_PATH, 'b')
    assert [n for n, _ in msg.options] == [6, 11, 11, 15]
    assert option_values(msg, coap.URI_PATH) == [b'a', b'b']


def test_encode_sorts_unsorted_option_lists_stably():
    opts = [(15, b'q'), (11, b'a'), (6, b''), (11, b'b')]
    data = coap.encode_message(coap.CON, coap.GET, 7, b'', opts)
    back = coap.decode(data)
    assert [n for n, _ in back.options] == [6, 11, 11, 15]
    assert option_values(back, coap.URI_PATH) == [b'a', b'b']


def test_uint_option_values_are_minimal():
    assert coap.encode_uint(0) == b''
    assert coap.encode_uint(60) == b'\x3c'
    assert coap.encode_uint(256) == b'\x01\x00'
    assert coap.encode_uint(0xFFFFFF) == b'\xff\xff\xff'
    assert coap.decode_uint(b'') == 0 and coap.decode_uint(b'\x01\x00') == 256


def test_content_format_constants():
    assert coap.CF_CBOR == 60 and coap.CF_LINK_FORMAT == 40
    msg = CoapMessage(coap.ACK, coap.CONTENT, 8).add(coap.CONTENT_FORMAT, coap.CF_CBOR)
    assert coap.encode(msg) == h('60 45 00 08 c1 3c')


def test_remove_option_drops_every_occurrence_and_keeps_the_others():
    msg = CoapMessage(coap.CON, coap.GET, 9).add(coap.ACCEPT, 0).add(coap.ACCEPT, 1)
    msg.add(coap.URI_PATH, 'a')
    msg.remove(coap.ACCEPT)
    assert msg.get(coap.ACCEPT) is None and msg.options == [(coap.URI_PATH, b'a')]


def test_empty_message_and_code_text():
    assert coap.encode_message(coap.RST, coap.EMPTY, 0x1234) == h('70 00 12 34')
    ping = coap.decode(h('40 00 12 35'))
    assert ping.code == coap.EMPTY and ping.mtype == coap.CON
    assert coap.code_str(coap.REQUEST_ENTITY_TOO_LARGE) == '4.13'
    assert coap.code_str(coap.CONTINUE) == '2.31'


# ---- malformed input --------------------------------------------------------------------

def test_truncated_header_is_ignored_silently():
    for data in (b'', b'\x40', b'\x40\x01\x00'):
        err = decode_error(data)
        assert err.mid is None and coap.error_reply(err) is None


def test_unknown_version_is_ignored_silently():
    err = decode_error(h('80 01 00 01'))
    assert coap.error_reply(err) is None


def test_token_length_9_to_15_is_rejected_with_reset_for_con():
    for tkl in range(9, 16):
        data = bytes([0x40 | tkl, 1, 0x12, 0x34]) + bytes(15)
        err = decode_error(data)
        assert err.rst and err.mid == 0x1234
        assert coap.error_reply(err) == h('70 00 12 34')


def test_bad_token_length_in_non_is_not_answered():
    err = decode_error(bytes([0x5c, 1, 0, 1]) + bytes(12))
    assert coap.error_reply(err) is None


def test_truncated_token_is_a_format_error():
    err = decode_error(h('44 01 00 07 aa bb'))
    assert coap.error_reply(err) == h('70 00 00 07')


def test_option_delta_nibble_15_without_payload_marker():
    err = decode_error(h('40 01 00 08 f1 00'))
    assert coap.error_reply(err) == h('70 00 00 08')


def test_option_length_nibble_15_is_a_format_error():
    err = decode_error(h('40 01 00 09 bf 00'))
    assert err.rst


def test_payload_marker_with_empty_payload_is_a_format_error():
    err = decode_error(h('40 01 00 0a ff'))
    assert coap.error_reply(err) == h('70 00 00 0a')


def test_truncated_extended_delta_and_value():
    assert decode_error(h('40 01 00 0b d1')).rst             # ext byte missing
    assert decode_error(h('40 01 00 0c e1 01')).rst          # second ext byte missing
    assert decode_error(h('40 01 00 0d b5 61 62')).rst       # value 2 of 5 bytes


def test_empty_message_with_content_is_rejected():
    assert coap.error_reply(decode_error(h('41 00 00 0e 01'))) == h('70 00 00 0e')


def test_reserved_code_class_is_rejected():
    err = decode_error(h('40 21 00 0f'))          # 1.01
    assert coap.error_reply(err) == h('70 00 00 0f')
    assert coap.error_reply(decode_error(h('40 e0 00 10'))) == h('70 00 00 10')  # 7.00


def test_reset_or_ack_carrying_a_request_is_ignored():
    assert coap.error_reply(decode_error(h('70 01 00 11'))) is None
    assert coap.error_reply(decode_error(h('60 01 00 12'))) is None


def test_unknown_critical_option_in_con_request_gives_4_02():
    data = h('41 01 00 13 77 e0 07 f2')            # critical option 2303, token 0x77
    err = decode_error(data)
    assert err.code == coap.BAD_OPTION
    assert coap.error_reply(err) == h('61 82 00 13 77')


def test_unknown_critical_option_in_non_request_is_dropped():
    err = decode_error(h('51 01 00 14 77 e0 07 f2'))
    assert coap.error_reply(err) is None


def test_unknown_critical_option_in_con_response_gives_reset():
    err = decode_error(h('41 45 00 15 77 e0 07 f2'))
    assert coap.error_reply(err) == h('70 00 00 15')


def test_unknown_elective_option_is_kept():
    msg = coap.decode(h('40 01 00 16 e1 07 f1 7a'))   # option 2302 (even)
    assert msg.get(2302) == b'z'


def test_bad_length_elective_option_is_dropped():
    # Max-Age (14, elective) with 5 bytes; Uri-Path kept
    msg = coap.decode(h('40 01 00 17 b1 61 35 01 02 03 04 05'))
    assert msg.get(coap.MAX_AGE) is None
    assert option_values(msg, coap.URI_PATH) == [b'a']


def test_bad_length_critical_option_gives_4_02():
    err = decode_error(h('40 01 00 18 30'))           # empty Uri-Host (min length 1)
    assert err.code == coap.BAD_OPTION


def test_repeated_non_repeatable_critical_option_gives_4_02():
    err = decode_error(h('40 01 00 19 d1 04 3c 01 00'))  # Accept twice
    assert err.code == coap.BAD_OPTION


def test_reserved_block_szx_7_in_request_gives_4_00():
    err = decode_error(h('40 01 00 1a d1 0a 07'))     # Block2 0/0/szx 7
    assert err.code == coap.BAD_REQUEST
    assert coap.error_reply(err) == h('60 80 00 1a')


def test_oversized_request_gives_4_13_with_size1():
    data = coap.encode_message(coap.CON, coap.PUT, 0x1b, b'\x01', (), bytes(200))
    err = decode_error(data, max_size=100)
    assert err.code == coap.REQUEST_ENTITY_TOO_LARGE
    assert coap.error_reply(err) == h('61 8d 00 1b 01 d1 2f 64')


def test_oscore_option_needs_an_oscore_layer():
    data = h('41 02 00 1c 01 91 09')                   # POST with OSCORE option
    assert decode_error(data).code == coap.BAD_OPTION
    msg = coap.decode(data, extra_options={coap.OSCORE: (0, 255, False)})
    assert msg.get(coap.OSCORE) == b'\x09'


def test_non_request_error_answered_as_non_when_a_mid_is_given():
    err = decode_error(h('51 01 00 1d 99 d1 0a 07'))  # NON request, Block2 szx 7
    assert coap.error_reply(err, mid=0x2000) == h('51 80 20 00 99')


def _lcg(seed):
    state = [seed]

    def nxt():
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] >> 8
    return nxt


def test_random_garbage_and_bit_flips_only_raise_coap_error():
    rnd = _lcg(7)
    base = coap.encode(coap.set_uri(CoapMessage(coap.CON, coap.GET, 0x55, b'tok'),
                                    'a/bb/ccc', ['x=1']).add(coap.BLOCK2, b'\x02'))
    decoded = 0
    for i in range(600):
        if i & 1:
            data = bytes(rnd() & 0xFF for _ in range(rnd() % 40))
        else:
            buf = bytearray(base)
            for _ in range(1 + rnd() % 3):
                buf[rnd() % len(buf)] ^= 1 << (rnd() % 8)
            data = bytes(buf[:len(buf) - rnd() % 4])
        try:
            msg = coap.decode(data)
        except CoapError as err:
            reply = coap.error_reply(err)
            assert reply is None or coap.decode(reply).mtype in (coap.ACK, coap.RST)
            continue
        decoded += 1
        again = coap.decode(coap.encode(msg))
        assert again.options == msg.options and again.payload == msg.payload
    assert decoded > 0


def test_int_and_str_option_values_encode_like_their_bytes():
    as_bytes = coap.encode_message(coap.CON, coap.GET, 5, b'\x01',
                                   [(coap.OBSERVE, coap.encode_uint(70000)), (coap.URI_PATH, b's'),
                                    (coap.CONTENT_FORMAT, coap.encode_uint(65000))], b'x')
    as_values = coap.encode_message(coap.CON, coap.GET, 5, b'\x01',
                                    [(coap.URI_PATH, 's'), (coap.OBSERVE, 70000),
                                     (coap.CONTENT_FORMAT, 65000)], b'x')
    assert as_values == as_bytes
    m = coap.decode(as_values)
    assert m.get_uint(coap.OBSERVE) == 70000 and m.get_uint(coap.CONTENT_FORMAT) == 65000


def test_negative_int_option_value_is_refused():
    try:
        coap.encode_message(coap.CON, coap.GET, 5, b'', [(coap.OBSERVE, -1)])
    except ValueError:
        return
    assert False, 'negative uint accepted'


def test_private_copies_of_coap_numbers_match_coap():
    # the endpoint modules fold CoAP numbers in as private consts; CPython keeps their
    # names (MicroPython's compiler drops them, so there is nothing to compare there)
    from spot.core import coap_server, coap_client, coap_endpoint
    from spot.core.compat import MICROPYTHON
    checked = 0
    for mod in (coap_server, coap_client, coap_endpoint):
        for name in dir(mod):
            if name[:1] == '_' and name[1:].isupper() and hasattr(coap, name[1:]):
                assert getattr(mod, name) == getattr(coap, name[1:]), (mod, name)
                checked += 1
    assert checked >= 45 or MICROPYTHON
