"""OSCORE (RFC 8613): HKDF (RFC 5869), key derivation and protected messages of
Appendix C byte for byte, error codes, replay window and sequence numbers."""
from spot.core import hkdf as hk
from spot.core import oscore as osc
from spot.core.oscore import OscoreError, SecurityContext
from spot.core.replay import ReplayWindow, REPLAYED, TOO_OLD
from _assert import raises

h = bytes.fromhex

SECRET = h("0102030405060708090a0b0c0d0e0f10")
SALT = h("9e7ca92223786340")
ID_CONTEXT = h("37cbf3210017a2d3")
GET = 0x01
URI_PATH = 11
HELLO = b"Hello World!"



def _oscore_error(code, fn, *args):
    e = raises(OscoreError, fn, *args)
    assert e.code == code, (e.code, e.reason)
    return e


# Appendix C.1 (with Master Salt), C.2 (without), C.3 (with ID Context)
def _c1_client(seq=20):
    return SecurityContext(SECRET, b"", b"\x01", SALT, sender_seq=seq)


def _c1_server():
    return SecurityContext(SECRET, b"\x01", b"", SALT)


def _c2_client(seq=20):
    return SecurityContext(SECRET, b"\x00", b"\x01", sender_seq=seq)


def _c2_server():
    return SecurityContext(SECRET, b"\x01", b"\x00")


def _c3_client(seq=20):
    return SecurityContext(SECRET, b"", b"\x01", SALT, ID_CONTEXT, sender_seq=seq)


def _c3_server():
    return SecurityContext(SECRET, b"\x01", b"", SALT, ID_CONTEXT)


def _c4_request():
    client = _c1_client()
    return client, client.protect_request(GET, [(URI_PATH, b"tv1")])


# ---------------------------------------------------------------- HKDF ----

def test_hmac_sha256_rfc4231_case_2():
    expected = h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    assert hk.hmac_sha256_pure(b"Jefe", b"what do ya want for nothing?") == expected
    assert hk.hmac_sha256(b"Jefe", b"what do ya want for nothing?") == expected


def test_pure_hmac_hashes_keys_longer_than_a_block():
    key = bytes(range(100))
    assert hk.hmac_sha256_pure(key, b"m") == hk.hmac_sha256(key, b"m")
    assert hk.hmac_sha256_pure(key, b"m") != hk.hmac_sha256_pure(key[:64], b"m")


def test_hkdf_rfc5869_case_1():
    ikm = b"\x0b" * 22
    salt = h("000102030405060708090a0b0c")
    prk = hk.hkdf_extract(salt, ikm)
    assert prk == h("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    okm = hk.hkdf_expand(prk, h("f0f1f2f3f4f5f6f7f8f9"), 42)
    assert okm == h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                    "34007208d5b887185865")


def test_hkdf_rfc5869_case_2_long_inputs():
    okm = hk.hkdf(bytes(range(0x60, 0xB0)), bytes(range(0x50)), bytes(range(0xB0, 0x100)), 82)
    assert okm == h("b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
                    "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
                    "cc30c58179ec3e87c14c01d5c1f3434f1d87")


def test_hkdf_rfc5869_case_3_empty_salt_and_info():
    prk = hk.hkdf_extract(b"", b"\x0b" * 22)
    assert prk == h("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04")
    assert hk.hkdf(b"", b"\x0b" * 22, b"", 42) == h(
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
        "9d201395faa4b61a96c8")


def test_hkdf_refuses_more_than_255_blocks():
    raises(ValueError, hk.hkdf_expand, bytes(32), b"", 255 * 32 + 1)
    assert len(hk.hkdf_expand(bytes(32), b"", 0)) == 0


# ---------------------------------------------- key derivation C.1-C.3 ----

def test_c1_kdf_info_structures():
    assert osc.kdf_info(b"", None, 10, "Key", 16) == h("8540f60a634b657910")
    assert osc.kdf_info(b"\x01", None, 10, "Key", 16) == h("854101f60a634b657910")
    assert osc.kdf_info(b"", None, 10, "IV", 13) == h("8540f60a6249560d")


def test_c1_key_derivation_with_master_salt():
    client = _c1_client()
    assert client.sender_key == h("f0910ed7295e6ad4b54fc793154302ff")
    assert client.recipient_key == h("ffb14e093c94c9cac9471648b4f98710")
    assert client.common_iv == h("4622d4dd6d944168eefb54987c")
    assert client.nonce(client.sender_id, b"\x00") == h("4622d4dd6d944168eefb54987c")
    assert client.nonce(client.recipient_id, b"\x00") == h("4722d4dd6d944169eefb54987c")
    server = _c1_server()
    assert server.sender_key == client.recipient_key
    assert server.recipient_key == client.sender_key
    assert server.nonce(server.sender_id, b"\x00") == h("4722d4dd6d944169eefb54987c")


def test_c2_key_derivation_without_master_salt():
    client = _c2_client()
    assert osc.kdf_info(b"\x00", None, 10, "Key", 16) == h("854100f60a634b657910")
    assert client.sender_key == h("321b26943253c7ffb6003b0b64d74041")
    assert client.recipient_key == h("e57b5635815177cd679ab4bcec9d7dda")
    assert client.common_iv == h("be35ae297d2dace910c52e99f9")
    assert client.nonce(client.sender_id, b"\x00") == h("bf35ae297d2dace910c52e99f9")
    assert client.nonce(client.recipient_id, b"\x00") == h("bf35ae297d2dace810c52e99f9")
    assert _c2_server().sender_key == h("e57b5635815177cd679ab4bcec9d7dda")


def test_c3_key_derivation_with_id_context():
    assert osc.kdf_info(b"", ID_CONTEXT, 10, "Key", 16) == h(
        "85404837cbf3210017a2d30a634b657910")
    assert osc.kdf_info(b"", ID_CONTEXT, 10, "IV", 13) == h(
        "85404837cbf3210017a2d30a6249560d")
    client = _c3_client()
    assert client.sender_key == h("af2a1300a5e95788b356336eeecd2b92")
    assert client.recipient_key == h("e39a0c7c77b43f03b4b39ab9a268699f")
    assert client.common_iv == h("2ca58fb85ff1b81c0b7181b85e")
    assert client.nonce(client.recipient_id, b"\x00") == h("2da58fb85ff1b81d0b7181b85e")
    assert _c3_server().recipient_key == h("af2a1300a5e95788b356336eeecd2b92")


def test_section_5_4_aad_example():
    assert osc.aad(10, b"\x00", b"\x25") == h(
        "8368456e63727970743040498501810a4100412540")


# -------------------------------------------- protected messages C.4-C.8 ----

def test_c4_request_protection_is_byte_exact():
    client, (outer, option, ct, binding) = _c4_request()
    assert osc.aad(10, b"", b"\x14") == h("8368456e63727970743040488501810a40411440")
    assert osc.encode_plaintext(GET, [(URI_PATH, b"tv1")]) == h("01b3747631")
    assert outer == osc.POST
    assert option == h("0914")
    assert ct == h("612f1092f1776f1c1668b3825e")
    assert binding.nonce == h("4622d4dd6d944168eefb549868")
    assert client.sender_seq == 21


def test_c5_request_protection_is_byte_exact():
    outer, option, ct, binding = _c2_client().protect_request(GET, [(URI_PATH, b"tv1")])
    assert option == h("091400")
    assert ct == h("4ed339a5a379b0b8bc731fffb0")
    assert binding.nonce == h("bf35ae297d2dace910c52e99ed")


def test_c6_request_with_kid_context_is_byte_exact():
    outer, option, ct, binding = _c3_client().protect_request(GET, [(URI_PATH, b"tv1")])
    assert option == h("19140837cbf3210017a2d3")
    assert ct == h("72cd7273fd331ac45cffbe55c3")
    assert binding.nonce == h("2ca58fb85ff1b81c0b7181b84a")


def test_server_unprotects_c4_c5_c6_requests():
    cases = (
        (_c1_server(), "0914", "612f1092f1776f1c1668b3825e"),
        (_c2_server(), "091400", "4ed339a5a379b0b8bc731fffb0"),
        (_c3_server(), "19140837cbf3210017a2d3", "72cd7273fd331ac45cffbe55c3"),
    )
    for server, option, ct in cases:
        code, options, payload, binding = server.unprotect_request(h(option), h(ct))
        assert code == GET
        assert options == [(URI_PATH, b"tv1")]
        assert payload == b""
        assert binding.piv == b"\x14"
        assert server.window.highest == 20


def test_c7_response_reusing_request_nonce_is_byte_exact():
    server = _c1_server()
    _, _, _, binding = server.unprotect_request(h("0914"), h("612f1092f1776f1c1668b3825e"))
    outer, option, ct = server.protect_response(binding, osc.CONTENT, [], HELLO)
    assert outer == osc.CHANGED
    assert option == b""
    assert ct == h("dbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    assert server.sender_seq == 0


def test_c8_response_with_partial_iv_is_byte_exact():
    server = _c1_server()
    _, _, _, binding = server.unprotect_request(h("0914"), h("612f1092f1776f1c1668b3825e"))
    outer, option, ct = server.protect_response(binding, osc.CONTENT, [], HELLO, True)
    assert option == h("0100")
    assert ct == h("4d4c13669384b67354b2b6175ff4b8658c666a6cf88e")
    assert server.sender_seq == 1


def test_client_verifies_c7_and_c8_responses():
    client, (_, _, _, binding) = _c4_request()
    assert client.unprotect_response(
        binding, b"", h("dbaad1e9a7e7b2a813d3c31524378303cdafae119106")) == (
        osc.CONTENT, [], HELLO)
    client, (_, _, _, binding) = _c4_request()
    assert client.unprotect_response(
        binding, h("0100"), h("4d4c13669384b67354b2b6175ff4b8658c666a6cf88e")) == (
        osc.CONTENT, [], HELLO)


# ------------------------------------------------------ error handling ----

def test_replayed_request_is_rejected_with_4_01_and_nothing_changes():
    server = _c1_server()
    server.unprotect_request(h("0914"), h("612f1092f1776f1c1668b3825e"))
    state = server.window.state()
    e = _oscore_error(osc.UNAUTHORIZED, server.unprotect_request,
                      h("0914"), h("612f1092f1776f1c1668b3825e"))
    assert e.reason == "Replay detected"
    assert server.window.state() == state


def test_tampered_request_gives_4_00_and_does_not_move_the_window():
    server = _c1_server()
    bad = bytearray(h("612f1092f1776f1c1668b3825e"))
    bad[2] ^= 0x40
    e = _oscore_error(osc.BAD_REQUEST, server.unprotect_request, h("0914"), bytes(bad))
    assert e.reason == "Decryption failed"
    assert server.window.state() == (-1, 0)
    # the genuine message is still accepted afterwards
    assert server.unprotect_request(h("0914"), h("612f1092f1776f1c1668b3825e"))[0] == GET


def test_forged_partial_iv_does_not_burn_the_sequence_number():
    server = _c1_server()
    # same ciphertext claimed under Partial IV 0x15: fails, and 0x15 stays usable
    _oscore_error(osc.BAD_REQUEST, server.unprotect_request, h("0915"),
                  h("612f1092f1776f1c1668b3825e"))
    assert server.window.check(0x15) is None


def test_unknown_kid_or_kid_context_gives_4_01():
    server = _c1_server()
    _oscore_error(osc.UNAUTHORIZED, server.unprotect_request, h("091442"),
                  h("612f1092f1776f1c1668b3825e"))
    ctx_server = _c3_server()
    _oscore_error(osc.UNAUTHORIZED, ctx_server.unprotect_request,
                  h("191408") + b"ABCDEFGH", h("72cd7273fd331ac45cffbe55c3"))


def test_malformed_option_values_give_4_02():
    server = _c1_server()
    ct = h("612f1092f1776f1c1668b3825e")
    for option in ("2914", "0e1400000000000000", "00", "1914", "19140837cb",
                   "0114", "08", "03"):
        _oscore_error(osc.BAD_OPTION, server.unprotect_request, h(option), ct)
    _oscore_error(osc.BAD_OPTION, server.unprotect_request, b"", ct)
    assert server.window.state() == (-1, 0)


def test_ciphertext_not_longer_than_the_tag_gives_4_02():
    server = _c1_server()
    _oscore_error(osc.BAD_OPTION, server.unprotect_request, h("0914"), b"")
    _oscore_error(osc.BAD_OPTION, server.unprotect_request, h("0914"), bytes(8))


def test_decode_option_parts():
    assert osc.decode_option(b"") == (None, None, None)
    assert osc.decode_option(h("0914")) == (b"\x14", b"", None)
    assert osc.decode_option(h("19140837cbf3210017a2d3")) == (b"\x14", b"", ID_CONTEXT)
    assert osc.decode_option(h("0100")) == (b"\x00", None, None)
    assert osc.decode_option(h("0a123442")) == (h("1234"), b"\x42", None)
    for parts in ((b"\x14", b"", None), (None, b"\x01", b"ctx"), (h("0102030405"), None, None)):
        assert osc.decode_option(osc.encode_option(*parts)) == parts
    assert osc.encode_option() == b""


def test_request_and_response_over_a_fresh_context_pair():
    client = SecurityContext(b"secret", b"c", b"s")
    server = SecurityContext(b"secret", b"s", b"c")
    outer, option, ct, cb = client.protect_request(
        0x03, [(URI_PATH, b"obj"), (12, b"\x3c")], b"\x01\x02")
    code, options, payload, sb = server.unprotect_request(option, ct)
    assert (code, options, payload) == (0x03, [(URI_PATH, b"obj"), (12, b"\x3c")], b"\x01\x02")
    outer, option, ct = server.protect_response(sb, osc.CHANGED, [], b"ok")
    assert outer == osc.CHANGED
    assert client.unprotect_response(cb, option, ct) == (osc.CHANGED, [], b"ok")


def test_response_is_bound_to_its_request():
    client = SecurityContext(b"secret", b"c", b"s")
    server = SecurityContext(b"secret", b"s", b"c")
    _, opt_a, ct_a, cb_a = client.protect_request(GET, [])
    _, opt_b, ct_b, cb_b = client.protect_request(GET, [])
    sb_a = server.unprotect_request(opt_a, ct_a)[3]
    server.unprotect_request(opt_b, ct_b)
    _, ropt, rct = server.protect_response(sb_a, osc.CONTENT, [], b"for a")
    _oscore_error(osc.BAD_REQUEST, client.unprotect_response, cb_b, ropt, rct)
    assert client.unprotect_response(cb_a, ropt, rct)[2] == b"for a"


def test_replayed_responses_are_rejected():
    client = SecurityContext(b"secret", b"c", b"s")
    server = SecurityContext(b"secret", b"s", b"c")
    _, opt, ct, cb = client.protect_request(GET, [(6, b"")])
    sb = server.unprotect_request(opt, ct)[3]
    first = server.protect_response(sb, osc.CONTENT, [(6, b"\x01")], b"1")
    assert first[0] == osc.CONTENT   # a notification travels as 2.05
    client.unprotect_response(cb, first[1], first[2])
    _oscore_error(osc.UNAUTHORIZED, client.unprotect_response, cb, first[1], first[2])
    n1 = server.protect_response(sb, osc.CONTENT, [(6, b"\x02")], b"2", True)
    n2 = server.protect_response(sb, osc.CONTENT, [(6, b"\x03")], b"3", True)
    assert client.unprotect_response(cb, n2[1], n2[2])[2] == b"3"
    # older or repeated Partial IVs are refused
    _oscore_error(osc.UNAUTHORIZED, client.unprotect_response, cb, n1[1], n1[2])
    _oscore_error(osc.UNAUTHORIZED, client.unprotect_response, cb, n2[1], n2[2])


def test_failed_response_leaves_binding_usable():
    client, (_, _, _, binding) = _c4_request()
    good = h("dbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    bad = bytearray(good)
    bad[-1] ^= 1
    _oscore_error(osc.BAD_REQUEST, client.unprotect_response, binding, b"", bytes(bad))
    assert client.unprotect_response(binding, b"", good)[2] == HELLO


def test_observe_request_uses_fetch_as_outer_code():
    client = SecurityContext(b"secret", b"c", b"s")
    assert client.protect_request(GET, [(6, b"")])[0] == osc.FETCH
    assert client.protect_request(GET, [], b"", osc.POST)[0] == osc.POST


def test_inner_code_kinds_are_checked():
    client = SecurityContext(b"secret", b"c", b"s")
    server = SecurityContext(b"secret", b"s", b"c")
    raises(ValueError, client.protect_request, osc.CONTENT, [])
    raises(ValueError, client.protect_request, 0x00, [])
    # a response code smuggled into a request is refused after decryption
    nonce = client.nonce(b"c", b"\x00")
    ct = client._sender_aead.encrypt(nonce, b"\x45", osc.aad(10, b"c", b"\x00"))
    _oscore_error(osc.BAD_REQUEST, server.unprotect_request, h("090063"), ct)
    assert server.window.state() == (-1, 0)


def test_unknown_algorithm_and_overlong_ids_are_refused():
    raises(ValueError, SecurityContext, SECRET, b"", b"\x01", b"", None, 1)
    raises(ValueError, SecurityContext, SECRET, bytes(8), b"\x01")
    raises(ValueError, SecurityContext, SECRET, b"\x01", bytes(2), b"", None, 12)
    raises(ValueError, SecurityContext, SECRET, b"\x05", b"\x05")


def test_alg_30_with_16_byte_tag_round_trips():
    client = SecurityContext(b"secret", b"c", b"s", alg=30)
    server = SecurityContext(b"secret", b"s", b"c", alg=30)
    _, opt, ct, _ = client.protect_request(GET, [], b"abc")
    assert len(ct) == 1 + 1 + 3 + 16
    assert server.unprotect_request(opt, ct)[2] == b"abc"


def test_find_context_by_kid_and_kid_context():
    a = SecurityContext(SECRET, b"\x01", b"", SALT)
    b = SecurityContext(SECRET, b"\x01", b"", SALT, ID_CONTEXT)
    c = SecurityContext(SECRET, b"\x01", b"\x07")
    assert osc.find_context([a, c], h("0914")) is a
    assert osc.find_context([a, b], h("19140837cbf3210017a2d3")) is b
    assert osc.find_context([a, c], h("091407")) is c
    _oscore_error(osc.UNAUTHORIZED, osc.find_context, [a, c], h("091408"))
    _oscore_error(osc.BAD_OPTION, osc.find_context, [a, c], h("0114"))


# -------------------------------------------------- plaintext encoding ----

def test_plaintext_sorts_options_and_keeps_repeats_in_order():
    pt = osc.encode_plaintext(GET, [(15, b"q"), (11, b"a"), (11, b"b"), (11, b"c")])
    code, options, payload = osc.decode_plaintext(pt)
    assert options == [(11, b"a"), (11, b"b"), (11, b"c"), (15, b"q")]


def test_plaintext_extended_option_deltas_and_lengths_round_trip():
    options = [(11, b"x" * 12), (12, b"y" * 13), (60, b"z" * 268), (2100, b"w" * 269),
               (2101, b"")]
    pt = osc.encode_plaintext(0x02, options, b"\xff\x00")
    assert osc.decode_plaintext(pt) == (0x02, options, b"\xff\x00")


def test_plaintext_refuses_the_oscore_option():
    raises(ValueError, osc.encode_plaintext, GET, [(osc.OPTION_OSCORE, b"")])
    _oscore_error(osc.BAD_OPTION, osc.decode_plaintext, h("019100"))


def test_malformed_plaintexts_give_4_00():
    for bad in ("", "01ff", "01f0", "010f", "01d0", "01e000", "01b474", "010d"):
        _oscore_error(osc.BAD_REQUEST, osc.decode_plaintext, h(bad))


# ------------------------------------------------------- replay window ----

def test_window_accepts_new_and_rejects_seen_numbers():
    w = ReplayWindow()
    assert w.check(5) is None
    w.mark(5)
    assert w.check(5) == REPLAYED
    assert w.check(3) is None      # older but unseen, inside the window
    w.mark(3)
    assert w.check(3) == REPLAYED
    assert w.check(6) is None


def test_window_rejects_numbers_older_than_its_size():
    w = ReplayWindow(32)
    w.mark(100)
    assert w.check(69) is None     # 100 - 31: oldest still tracked
    assert w.check(68) == TOO_OLD
    w.mark(140)
    assert w.check(100) == TOO_OLD
    assert w.check(139) is None
    assert w.check(140) == REPLAYED


def test_window_slides_and_keeps_recent_bits():
    w = ReplayWindow(8)
    for seq in (0, 1, 2, 5):
        w.mark(seq)
    w.mark(9)
    assert [w.check(s) for s in range(0, 11)] == [
        TOO_OLD, TOO_OLD, REPLAYED, None, None, REPLAYED, None, None, None, REPLAYED, None]


def test_window_state_restores_exactly():
    w = ReplayWindow()
    for seq in (7, 9, 30):
        w.mark(seq)
    saved = w.state()
    w2 = ReplayWindow()
    w2.restore(saved)
    for seq in range(0, 40):
        assert w2.check(seq) == w.check(seq)
    raises(ValueError, w2.restore, (5, 1 << 32))


def test_window_reject_up_to_refuses_everything_before():
    w = ReplayWindow()
    w.reject_up_to(1000)
    assert w.check(1000) == REPLAYED
    assert w.check(990) == REPLAYED
    assert w.check(10) == TOO_OLD
    assert w.check(1001) is None


def test_server_rejects_request_older_than_window():
    client = SecurityContext(b"secret", b"c", b"s")
    server = SecurityContext(b"secret", b"s", b"c")
    old = client.protect_request(GET, [])
    client.sender_seq = 40
    new = client.protect_request(GET, [])
    server.unprotect_request(new[1], new[2])
    _oscore_error(osc.UNAUTHORIZED, server.unprotect_request, old[1], old[2])


def test_restored_window_keeps_rejecting_replays():
    client = SecurityContext(b"secret", b"c", b"s")
    server = SecurityContext(b"secret", b"s", b"c")
    msg = client.protect_request(GET, [])
    server.unprotect_request(msg[1], msg[2])
    window = ReplayWindow()
    window.restore(server.window.state())
    rebooted = SecurityContext(b"secret", b"s", b"c", window=window)
    _oscore_error(osc.UNAUTHORIZED, rebooted.unprotect_request, msg[1], msg[2])


# ------------------------------------------- Sender Sequence Number ----

def test_guarded_sequence_needs_a_confirmed_reservation():
    ctx = SecurityContext(b"secret", b"c", b"s", persisted_seq=0)
    assert ctx.sender_seq_remaining() == 0
    e = _oscore_error(osc.INTERNAL_ERROR, ctx.protect_request, GET, [])
    assert ctx.sender_seq == 0
    value = ctx.reserve_sender_seq(3)
    assert value == 3
    assert ctx.sender_seq_remaining() == 0   # not usable before confirm
    ctx.confirm_sender_seq(value)
    assert ctx.sender_seq_remaining() == 3
    pivs = [ctx.protect_request(GET, [])[1] for _ in range(3)]
    assert pivs == [h("090063"), h("090163"), h("090263")]
    _oscore_error(osc.INTERNAL_ERROR, ctx.protect_request, GET, [])
    assert ctx.sender_seq == 3
    assert e.reason == "Sender Sequence Number not reserved"


def test_reservation_extends_before_running_out():
    ctx = SecurityContext(b"secret", b"c", b"s", persisted_seq=0)
    ctx.confirm_sender_seq(ctx.reserve_sender_seq(10))
    ctx.protect_request(GET, [])
    assert ctx.reserve_sender_seq(10) == 20
    raises(ValueError, ctx.confirm_sender_seq, 5)


def test_resuming_from_persisted_value_never_reuses_a_partial_iv():
    before = SecurityContext(b"secret", b"c", b"s", persisted_seq=0)
    stored = before.reserve_sender_seq(4)
    before.confirm_sender_seq(stored)
    used = [before.protect_request(GET, [])[1] for _ in range(2)]
    # reboot: only `stored` survived
    after = SecurityContext(b"secret", b"c", b"s", persisted_seq=stored)
    after.confirm_sender_seq(after.reserve_sender_seq(4))
    option = after.protect_request(GET, [])[1]
    assert osc.decode_option(option)[0] == b"\x04"
    assert option not in used


def test_sender_sequence_number_exhaustion():
    ctx = SecurityContext(b"secret", b"c", b"s", sender_seq=osc.MAX_SEQ)
    option = ctx.protect_request(GET, [])[1]
    assert osc.decode_option(option)[0] == h("ffffffffff")
    e = _oscore_error(osc.INTERNAL_ERROR, ctx.protect_request, GET, [])
    assert e.reason == "Sender Sequence Number exhausted"
    assert ctx.sender_seq == osc.MAX_SEQ + 1


def test_unguarded_context_reports_no_limit():
    ctx = SecurityContext(b"secret", b"c", b"s")
    assert ctx.sender_seq_remaining() is None
    assert osc.piv_from_seq(0) == b"\x00"
    assert osc.piv_from_seq(256) == b"\x01\x00"
    raises(ValueError, osc.piv_from_seq, osc.MAX_SEQ + 1)


def test_oversized_ciphertext_gives_4_00_without_state_change():
    server = _c1_server()
    _oscore_error(osc.BAD_REQUEST, server.unprotect_request, h("0914"), bytes(70000))
    assert server.window.state() == (-1, 0)


def test_failed_protect_does_not_consume_a_sequence_number():
    ctx = SecurityContext(b"secret", b"c", b"s", sender_seq=7)
    raises(ValueError, ctx.protect_request, GET, [(osc.OPTION_OSCORE, b"")])
    raises(ValueError, ctx.protect_request, GET, [], bytes(70000))
    assert ctx.sender_seq == 7
    assert osc.decode_option(ctx.protect_request(GET, [])[1])[0] == b"\x07"


def test_second_response_to_one_request_gets_its_own_partial_iv():
    server = _c1_server()
    _, _, _, binding = server.unprotect_request(h("0914"), h("612f1092f1776f1c1668b3825e"))
    first = server.protect_response(binding, osc.CONTENT, [], HELLO)
    second = server.protect_response(binding, osc.CONTENT, [], HELLO)
    assert first[1] == b""
    assert first[2] == h("dbaad1e9a7e7b2a813d3c31524378303cdafae119106")
    assert second[1] == h("0100")    # never the request nonce twice
    assert second[2] == h("4d4c13669384b67354b2b6175ff4b8658c666a6cf88e")
    client, (_, _, _, cbinding) = _c4_request()
    assert client.unprotect_response(cbinding, first[1], first[2])[2] == HELLO
    assert client.unprotect_response(cbinding, second[1], second[2])[2] == HELLO
