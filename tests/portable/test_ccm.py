"""AES-CCM against RFC 3610 and NIST SP 800-38C known answers; tamper checks."""
from spot.core import ccm
from spot.core.ccm import Ccm, AuthenticationError
from _assert import raises

h = bytes.fromhex

RFC3610_KEY = h("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf")
# (nonce, number of AAD bytes at the front of 00 01 02 ..., total length, M, ciphertext || tag)
RFC3610_PACKETS = (
    ("00000003020100a0a1a2a3a4a5", 8, 31, 8,
     "588c979a61c663d2f066d0c2c0f989806d5f6b61dac38417e8d12cfdf926e0"),
    ("00000004030201a0a1a2a3a4a5", 8, 32, 8,
     "72c91a36e135f8cf291ca894085c87e3cc15c439c9e43a3ba091d56e10400916"),
    ("00000005040302a0a1a2a3a4a5", 8, 33, 8,
     "51b1e5f44a197d1da46b0f8e2d282ae871e838bb64da8596574adaa76fbd9fb0c5"),
    ("00000006050403a0a1a2a3a4a5", 12, 31, 8,
     "a28c6865939a9a79faaa5c4c2a9d4a91cdac8c96c861b9c9e61ef1"),
)

NIST_KEY = h("404142434445464748494a4b4c4d4e4f")
# SP 800-38C Appendix C examples 1-3: (nonce, aad, plaintext, tag length, output)
NIST_EXAMPLES = (
    ("10111213141516", "0001020304050607", "20212223", 4, "7162015b4dac255d"),
    ("1011121314151617", "000102030405060708090a0b0c0d0e0f",
     "202122232425262728292a2b2c2d2e2f", 6,
     "d2a1f0e051ea5f62081a7792073d593d1fc64fbfaccd"),
    ("101112131415161718191a1b", "000102030405060708090a0b0c0d0e0f10111213",
     "202122232425262728292a2b2c2d2e2f3031323334353637", 8,
     "e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951"),
)



def _packet(aad_len, total):
    data = bytes(range(total))
    return data[:aad_len], data[aad_len:]


def test_rfc3610_packet_vectors_encrypt():
    for nonce, aad_len, total, m, out in RFC3610_PACKETS:
        aad, pt = _packet(aad_len, total)
        assert ccm.encrypt(RFC3610_KEY, h(nonce), pt, aad, m) == h(out)


def test_rfc3610_packet_vectors_decrypt():
    for nonce, aad_len, total, m, out in RFC3610_PACKETS:
        aad, pt = _packet(aad_len, total)
        assert ccm.decrypt(RFC3610_KEY, h(nonce), h(out), aad, m) == pt


def test_nist_sp800_38c_examples_with_other_tag_and_nonce_lengths():
    for nonce, aad, pt, m, out in NIST_EXAMPLES:
        n = h(nonce)
        l_len = 15 - len(n)
        assert ccm.encrypt(NIST_KEY, n, h(pt), h(aad), m, l_len) == h(out)
        assert ccm.decrypt(NIST_KEY, n, h(out), h(aad), m, l_len) == h(pt)


def test_default_parameters_are_cose_alg_10():
    c = Ccm(bytes(16))
    assert (c.tag_len, c.l_len, c.nonce_len) == (8, 2, 13)
    out = c.encrypt(bytes(13), b"abc", b"")
    assert len(out) == 3 + 8


def test_empty_plaintext_and_empty_aad_round_trip():
    c = Ccm(RFC3610_KEY)
    nonce = h("00000003020100a0a1a2a3a4a5")
    tag_only = c.encrypt(nonce, b"", b"")
    assert len(tag_only) == 8
    assert c.decrypt(nonce, tag_only, b"") == b""
    with_aad = c.encrypt(nonce, b"", b"header")
    assert with_aad != tag_only
    assert c.decrypt(nonce, with_aad, b"header") == b""


def test_flipped_ciphertext_bit_is_rejected():
    nonce, aad_len, total, m, out = RFC3610_PACKETS[0]
    aad, _ = _packet(aad_len, total)
    bad = bytearray(h(out))
    bad[0] ^= 0x01
    raises(AuthenticationError, ccm.decrypt, RFC3610_KEY, h(nonce), bytes(bad), aad)


def test_flipped_tag_bit_is_rejected():
    nonce, aad_len, total, m, out = RFC3610_PACKETS[0]
    aad, _ = _packet(aad_len, total)
    bad = bytearray(h(out))
    bad[-1] ^= 0x80
    raises(AuthenticationError, ccm.decrypt, RFC3610_KEY, h(nonce), bytes(bad), aad)


def test_changed_aad_or_nonce_is_rejected():
    nonce, aad_len, total, m, out = RFC3610_PACKETS[0]
    aad, _ = _packet(aad_len, total)
    raises(AuthenticationError, ccm.decrypt, RFC3610_KEY, h(nonce), h(out), aad[:-1])
    raises(AuthenticationError, ccm.decrypt, RFC3610_KEY, h(nonce), h(out), b"")
    other_nonce = bytearray(h(nonce))
    other_nonce[12] ^= 1
    raises(AuthenticationError, ccm.decrypt, RFC3610_KEY, bytes(other_nonce), h(out), aad)


def test_input_shorter_than_tag_is_rejected():
    c = Ccm(RFC3610_KEY)
    raises(AuthenticationError, c.decrypt, bytes(13), bytes(7), b"")
    # AuthenticationError is a ValueError, so generic handlers catch it too
    raises(ValueError, c.decrypt, bytes(13), b"", b"")


def test_truncated_ciphertext_is_rejected():
    nonce, aad_len, total, m, out = RFC3610_PACKETS[1]
    aad, _ = _packet(aad_len, total)
    raises(AuthenticationError, ccm.decrypt, RFC3610_KEY, h(nonce), h(out)[1:], aad)


def test_invalid_parameters_raise_value_error():
    raises(ValueError, Ccm, bytes(16), 5)
    raises(ValueError, Ccm, bytes(16), 2)
    raises(ValueError, Ccm, bytes(16), 18)
    raises(ValueError, Ccm, bytes(16), 8, 1)
    raises(ValueError, Ccm, bytes(16), 8, 9)
    raises(ValueError, Ccm, bytes(15))
    c = Ccm(bytes(16))
    raises(ValueError, c.encrypt, bytes(12), b"x", b"")
    raises(ValueError, c.decrypt, bytes(14), bytes(9), b"")


def test_message_longer_than_l_allows_is_refused():
    # L = 2 limits messages to 65535 bytes; checked before any block is encrypted.
    c = Ccm(bytes(16))
    raises(ValueError, c.encrypt, bytes(13), bytes(65536), b"")


def test_ccm_object_is_reusable_across_messages():
    c = Ccm(RFC3610_KEY)
    for nonce, aad_len, total, m, out in RFC3610_PACKETS[:2]:
        aad, pt = _packet(aad_len, total)
        assert c.encrypt(h(nonce), pt, aad) == h(out)
