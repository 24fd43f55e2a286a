"""Property tests of spot.core.aes/ccm/hkdf against the `cryptography` package,
and OSCORE interoperability with aiocoap's implementation (aiocoap.oscore,
which needs the `aiocoap[oscore]` extra)."""
import hmac
import hashlib
import importlib
import sys
import types

import pytest
from hypothesis import given, settings, strategies as st

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from aiocoap import oscore as aio_oscore
from aiocoap.message import Message, Direction
from aiocoap.numbers import codes

from spot.core import aes, ccm, hkdf, oscore
from spot.core.ccm import AuthenticationError
from spot.core.oscore import OscoreError, SecurityContext

keys = st.binary(min_size=16, max_size=16)
tag_lens = st.sampled_from([4, 6, 8, 10, 12, 14, 16])
nonce_lens = st.integers(min_value=7, max_value=13)
plaintexts = st.binary(min_size=0, max_size=300)
aads = st.binary(min_size=0, max_size=80)


def _ecb(key, block):
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(block)


# ------------------------------------------------------------------ AES ----

@given(keys, st.binary(min_size=16, max_size=16))
def test_pure_aes_block_matches_cryptography(key, block):
    assert aes.AesEcbPure(key).encrypt_block(block) == _ecb(key, block)
    assert aes.AesEcb(key).encrypt_block(block) == _ecb(key, block)


@given(keys, st.integers(min_value=0, max_value=6).flatmap(
    lambda n: st.binary(min_size=16 * n, max_size=16 * n)))
def test_pure_aes_ecb_blocks_match_cryptography(key, data):
    assert aes.AesEcbPure(key).encrypt_blocks(data) == _ecb(key, data)


class _FakeCryptolibAes:
    """Stands in for MicroPython's cryptolib.aes(key, 1) (ECB) on CPython."""

    def __init__(self, key, mode):
        assert mode == 1
        self._enc = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

    def encrypt(self, data):
        assert len(data) % 16 == 0
        return self._enc.update(bytes(data))


def test_cryptolib_backend_is_chosen_when_the_firmware_has_it(monkeypatch):
    fake = types.ModuleType("cryptolib")
    fake.aes = _FakeCryptolibAes
    monkeypatch.setitem(sys.modules, "cryptolib", fake)
    try:
        mod = importlib.reload(aes)
        assert mod.BACKEND == "cryptolib"
        assert mod.AesEcb is mod.AesEcbNative
        key, data = bytes(range(16)), bytes(range(48))
        assert mod.AesEcb(key).encrypt_block(data[:16]) == _ecb(key, data[:16])
        assert mod.AesEcb(key).encrypt_blocks(data) == _ecb(key, data)
        with pytest.raises(ValueError):
            mod.AesEcb(key).encrypt_block(data[:15])
    finally:
        monkeypatch.delitem(sys.modules, "cryptolib")
        importlib.reload(aes)
    assert aes.BACKEND == "python"


def test_hkdf_falls_back_to_own_hmac_without_the_hmac_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "hmac", None)   # import hmac -> ImportError
    try:
        mod = importlib.reload(hkdf)
        assert mod.hmac_sha256 is mod.hmac_sha256_pure
        expected = HKDF(hashes.SHA256(), 42, b"salt", b"info").derive(b"ikm")
        assert mod.hkdf(b"salt", b"ikm", b"info", 42) == expected
    finally:
        monkeypatch.undo()
        importlib.reload(hkdf)
    assert hkdf.hmac_sha256 is not hkdf.hmac_sha256_pure


# ------------------------------------------------------------------ CCM ----

@given(keys, tag_lens, nonce_lens.flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       plaintexts, aads)
def test_ccm_encrypt_matches_cryptography(key, tag_len, nonce, pt, aad):
    l_len = 15 - len(nonce)
    ours = ccm.encrypt(key, nonce, pt, aad, tag_len, l_len)
    assert ours == AESCCM(key, tag_length=tag_len).encrypt(nonce, pt, aad)
    assert ccm.decrypt(key, nonce, ours, aad, tag_len, l_len) == pt


@given(keys, st.binary(min_size=13, max_size=13), plaintexts, aads)
def test_ccm_decrypts_what_cryptography_encrypts(key, nonce, pt, aad):
    theirs = AESCCM(key, tag_length=8).encrypt(nonce, pt, aad)
    assert ccm.decrypt(key, nonce, theirs, aad) == pt


@given(keys, st.binary(min_size=13, max_size=13), plaintexts, aads, st.data())
def test_ccm_rejects_any_flipped_bit_in_ciphertext_or_tag(key, nonce, pt, aad, data):
    sealed = bytearray(ccm.encrypt(key, nonce, pt, aad))
    bit = data.draw(st.integers(min_value=0, max_value=8 * len(sealed) - 1))
    sealed[bit >> 3] ^= 1 << (bit & 7)
    with pytest.raises(AuthenticationError):
        ccm.decrypt(key, nonce, bytes(sealed), aad)
    with pytest.raises(InvalidTag):
        AESCCM(key, tag_length=8).decrypt(nonce, bytes(sealed), aad)


@given(keys, st.binary(min_size=13, max_size=13), plaintexts,
       st.binary(min_size=1, max_size=80), st.data())
def test_ccm_rejects_changed_aad(key, nonce, pt, aad, data):
    sealed = ccm.encrypt(key, nonce, pt, aad)
    i = data.draw(st.integers(min_value=0, max_value=len(aad) - 1))
    bad = bytearray(aad)
    bad[i] ^= 0x01
    with pytest.raises(AuthenticationError):
        ccm.decrypt(key, nonce, sealed, bytes(bad))
    with pytest.raises(AuthenticationError):
        ccm.decrypt(key, nonce, sealed, aad + b"\x00")


def test_ccm_long_aad_uses_the_ffee_length_form():
    key, nonce = bytes(range(16)), bytes(13)
    aad = bytes(range(256)) * 256          # 65536 bytes: 0xFFFE + 4-byte length
    assert ccm.encrypt(key, nonce, b"x", aad) == AESCCM(key, 8).encrypt(nonce, b"x", aad)


# ----------------------------------------------------------- HMAC / HKDF ----

@given(st.binary(max_size=150), st.binary(max_size=300))
def test_hmac_sha256_matches_stdlib(key, msg):
    expected = hmac.new(key, msg, hashlib.sha256).digest()
    assert hkdf.hmac_sha256_pure(key, msg) == expected
    assert hkdf.hmac_sha256(key, msg) == expected


@given(st.binary(max_size=80), st.binary(min_size=0, max_size=80), st.binary(max_size=80),
       st.integers(min_value=1, max_value=600))
def test_hkdf_matches_cryptography(salt, ikm, info, length):
    expected = HKDF(hashes.SHA256(), length, salt or None, info).derive(ikm)
    assert hkdf.hkdf(salt, ikm, info, length) == expected


# ----------------------------------------------------- OSCORE vs aiocoap ----

class AiocoapContext(aio_oscore.CanProtect, aio_oscore.CanUnprotect,
                     aio_oscore.SecurityContextUtils):
    """aiocoap's OSCORE context logic, kept in memory (no files, no Echo)."""

    def __init__(self, secret, salt, sender_id, recipient_id, id_context=None,
                 alg="AES-CCM-16-64-128"):
        self.sender_id = sender_id
        self.recipient_id = recipient_id
        self.id_context = id_context
        self.alg_aead = aio_oscore.algorithms[alg]
        self.hashfun = hashes.SHA256()
        self.sender_sequence_number = 0
        self.echo_recovery = None
        self.recipient_replay_window = aio_oscore.ReplayWindow(32, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.derive_keys(salt, secret)

    def post_seqnoincrease(self):
        pass


def _aio_options(msg):
    return [(int(o.number), o.encode()) for o in msg.opt.option_list()]


def _aio_incoming(code, option_value, ciphertext):
    msg = Message(code=code, payload=ciphertext)
    msg.opt.oscore = option_value
    msg.direction = Direction.INCOMING
    return msg


def _pair(secret=b"master-secret-16", salt=b"salt", client_id=b"\x01",
          server_id=b"\x02", id_context=None):
    ours_client = SecurityContext(secret, client_id, server_id, salt, id_context)
    ours_server = SecurityContext(secret, server_id, client_id, salt, id_context)
    aio_client = AiocoapContext(secret, salt, client_id, server_id, id_context)
    aio_server = AiocoapContext(secret, salt, server_id, client_id, id_context)
    return ours_client, ours_server, aio_client, aio_server


def test_aiocoap_derives_the_same_keys():
    ours, _, aio, _ = _pair(id_context=b"ctx")
    assert ours.sender_key == aio.sender_key
    assert ours.recipient_key == aio.recipient_key
    assert ours.common_iv == aio.common_iv


def test_our_request_is_unprotected_by_aiocoap_and_its_response_by_us():
    client, _, _, aio_server = _pair()
    outer, option, ct, binding = client.protect_request(
        codes.PUT, [(11, b"spot"), (11, b"obj"), (12, b"\x3c")], b"\xa1\x01\x02")
    request, request_id = aio_server.unprotect(_aio_incoming(outer, option, ct))
    assert request.code == codes.PUT
    assert request.opt.uri_path == ("spot", "obj")
    assert request.opt.content_format == 60
    assert request.payload == b"\xa1\x01\x02"

    response = Message(code=codes.CHANGED, payload=b"done", content_format=0)
    protected, _ = aio_server.protect(response, request_id)
    assert protected.code == codes.CHANGED
    code, options, payload = client.unprotect_response(
        binding, protected.opt.oscore, protected.payload)
    assert (code, options, payload) == (codes.CHANGED, [(12, b"")], b"done")


def test_aiocoap_request_is_unprotected_by_us_and_our_response_by_aiocoap():
    _, server, aio_client, _ = _pair()
    request = Message(code=codes.POST, uri_path=["spot", "cmd"], payload=b"go")
    protected, request_id = aio_client.protect(request)
    code, options, payload, binding = server.unprotect_request(
        protected.opt.oscore, protected.payload)
    assert code == codes.POST
    assert options == [(11, b"spot"), (11, b"cmd")]
    assert payload == b"go"

    outer, option, ct = server.protect_response(binding, codes.CONTENT, [(12, b"\x3c")],
                                                b"\x18\x2a")
    response, _ = aio_client.unprotect(_aio_incoming(outer, option, ct), request_id)
    assert response.code == codes.CONTENT
    assert response.opt.content_format == 60
    assert response.payload == b"\x18\x2a"


def test_our_response_with_own_partial_iv_is_accepted_by_aiocoap():
    _, server, aio_client, _ = _pair()
    protected, request_id = aio_client.protect(Message(code=codes.GET, uri_path=["x"]))
    binding = server.unprotect_request(protected.opt.oscore, protected.payload)[3]
    outer, option, ct = server.protect_response(binding, codes.CONTENT, [], b"n1", True)
    assert option == b"\x01\x00"
    response, _ = aio_client.unprotect(_aio_incoming(outer, option, ct), request_id)
    assert response.payload == b"n1"


def test_kid_context_requests_interoperate_both_ways():
    client, server, aio_client, aio_server = _pair(id_context=b"\x37\xcb\xf3\x21")
    outer, option, ct, _ = client.protect_request(codes.GET, [(11, b"a")])
    assert oscore.decode_option(option)[2] == b"\x37\xcb\xf3\x21"
    request, _ = aio_server.unprotect(_aio_incoming(outer, option, ct))
    assert request.opt.uri_path == ("a",)
    protected, _ = aio_client.protect(Message(code=codes.GET, uri_path=["b"]))
    assert server.unprotect_request(protected.opt.oscore, protected.payload)[1] == [
        (11, b"b")]


def test_aiocoap_reproduces_rfc8613_c4_from_our_parameters():
    client = SecurityContext(bytes.fromhex("0102030405060708090a0b0c0d0e0f10"), b"",
                             b"\x01", bytes.fromhex("9e7ca92223786340"), sender_seq=20)
    aio = AiocoapContext(bytes.fromhex("0102030405060708090a0b0c0d0e0f10"),
                         bytes.fromhex("9e7ca92223786340"), b"", b"\x01")
    aio.sender_sequence_number = 20
    protected, _ = aio.protect(Message(code=codes.GET, uri_path=["tv1"]))
    _, option, ct, _ = client.protect_request(codes.GET, [(11, b"tv1")])
    assert (protected.opt.oscore, protected.payload) == (option, ct)


def test_replayed_request_is_rejected_by_both():
    client, server, aio_client, aio_server = _pair()
    outer, option, ct, _ = client.protect_request(codes.GET, [(11, b"r")])
    aio_server.unprotect(_aio_incoming(outer, option, ct))
    with pytest.raises(aio_oscore.ReplayError):
        aio_server.unprotect(_aio_incoming(outer, option, ct))

    protected, _ = aio_client.protect(Message(code=codes.GET, uri_path=["r"]))
    server.unprotect_request(protected.opt.oscore, protected.payload)
    with pytest.raises(OscoreError) as err:
        server.unprotect_request(protected.opt.oscore, protected.payload)
    assert err.value.code == oscore.UNAUTHORIZED


def test_tampered_request_is_rejected_by_both():
    client, server, aio_client, aio_server = _pair()
    outer, option, ct, _ = client.protect_request(codes.GET, [(11, b"t")])
    bad = ct[:-1] + bytes((ct[-1] ^ 1,))
    with pytest.raises(aio_oscore.ProtectionInvalid):
        aio_server.unprotect(_aio_incoming(outer, option, bad))
    # and the untouched message still goes through afterwards
    assert aio_server.unprotect(_aio_incoming(outer, option, ct))[0].opt.uri_path == ("t",)


uri_segments = st.lists(st.binary(min_size=0, max_size=20).map(
    lambda b: b.hex().encode()[:20]), max_size=4)


@settings(max_examples=40, deadline=None)
@given(secret=st.binary(min_size=1, max_size=32), salt=st.binary(max_size=16),
       client_id=st.binary(max_size=7), server_id=st.binary(max_size=7),
       id_context=st.none() | st.binary(max_size=16), path=uri_segments,
       payload=st.binary(max_size=300), seq=st.integers(min_value=0, max_value=2 ** 40 - 2))
def test_random_contexts_interoperate_with_aiocoap(secret, salt, client_id, server_id,
                                                    id_context, path, payload, seq):
    if client_id == server_id:
        server_id = client_id + b"\x00" if len(client_id) < 7 else client_id[:-1]
    client, server, aio_client, aio_server = _pair(secret, salt, client_id, server_id,
                                                   id_context)
    client.sender_seq = seq
    aio_client.sender_sequence_number = seq
    options = [(11, seg) for seg in path]

    outer, option, ct, binding = client.protect_request(codes.POST, options, payload)
    request, request_id = aio_server.unprotect(_aio_incoming(outer, option, ct))
    assert (_aio_options(request), request.payload) == (options, payload)
    protected, _ = aio_server.protect(Message(code=codes.CONTENT, payload=payload[::-1]),
                                      request_id)
    assert client.unprotect_response(binding, protected.opt.oscore, protected.payload) == (
        codes.CONTENT, [], payload[::-1])

    protected, request_id = aio_client.protect(
        Message(code=codes.POST, uri_path=[seg.decode() for seg in path], payload=payload))
    assert (protected.opt.oscore, protected.payload) == (option, ct)
    code, got_options, got_payload, sbinding = server.unprotect_request(
        protected.opt.oscore, protected.payload)
    assert (code, got_options, got_payload) == (codes.POST, options, payload)
    outer, roption, rct = server.protect_response(sbinding, codes.CONTENT, [], payload[:7])
    response, _ = aio_client.unprotect(_aio_incoming(outer, roption, rct), request_id)
    assert response.payload == payload[:7]
