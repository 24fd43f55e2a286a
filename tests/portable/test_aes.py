"""AES-128 block encryption against FIPS-197 and SP 800-38A known answers."""
from spot.core import aes
from spot.core.aes import AesEcb, AesEcbPure, expand_key
from _assert import raises

h = bytes.fromhex



def test_fips197_appendix_c1_vector():
    cipher = AesEcbPure(h("000102030405060708090a0b0c0d0e0f"))
    ct = cipher.encrypt_block(h("00112233445566778899aabbccddeeff"))
    assert ct == h("69c4e0d86a7b0430d8cdb78070b4c55a")


def test_fips197_appendix_b_vector():
    cipher = AesEcbPure(h("2b7e151628aed2a6abf7158809cf4f3c"))
    ct = cipher.encrypt_block(h("3243f6a8885a308d313198a2e0370734"))
    assert ct == h("3925841d02dc09fbdc118597196a0b32")


def test_key_schedule_matches_fips197_appendix_a1():
    rk = expand_key(h("2b7e151628aed2a6abf7158809cf4f3c"))
    assert len(rk) == 11
    assert bytes(rk[0]) == h("2b7e151628aed2a6abf7158809cf4f3c")
    assert bytes(rk[1]) == h("a0fafe1788542cb123a339392a6c7605")
    assert bytes(rk[10]) == h("d014f9a8c9ee2589e13f0cc8b6630ca6")


def test_sp800_38a_ecb_blocks_one_by_one_and_together():
    key = h("2b7e151628aed2a6abf7158809cf4f3c")
    pt = h("6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51")
    expected = h("3ad77bb40d7a3660a89ecaf32466ef97" "f5d3d58503b9699de785895a96fdbaaf")
    cipher = AesEcbPure(key)
    assert cipher.encrypt_block(pt[:16]) == expected[:16]
    assert cipher.encrypt_block(pt[16:]) == expected[16:]
    assert cipher.encrypt_blocks(pt) == expected


def test_selected_backend_agrees_with_pure_python():
    # AesEcb is cryptolib on boards that have it, the pure code elsewhere.
    assert aes.BACKEND in ("cryptolib", "python")
    key = h("000102030405060708090a0b0c0d0e0f")
    block = h("00112233445566778899aabbccddeeff")
    assert AesEcb(key).encrypt_block(block) == AesEcbPure(key).encrypt_block(block)
    two = block + h("69c4e0d86a7b0430d8cdb78070b4c55a")
    assert AesEcb(key).encrypt_blocks(two) == AesEcbPure(key).encrypt_blocks(two)


def test_accepts_bytearray_and_memoryview_input():
    key = bytearray(h("000102030405060708090a0b0c0d0e0f"))
    block = memoryview(h("00112233445566778899aabbccddeeff"))
    assert AesEcbPure(key).encrypt_block(block) == h("69c4e0d86a7b0430d8cdb78070b4c55a")


def test_changing_one_key_bit_changes_the_block():
    block = h("00112233445566778899aabbccddeeff")
    a = AesEcbPure(h("000102030405060708090a0b0c0d0e0f")).encrypt_block(block)
    b = AesEcbPure(h("000102030405060708090a0b0c0d0e0e")).encrypt_block(block)
    assert a != b


def test_rejects_wrong_key_and_block_sizes():
    raises(ValueError, AesEcbPure, bytes(15))
    raises(ValueError, AesEcbPure, bytes(32))
    raises(ValueError, AesEcb, bytes(24))
    cipher = AesEcbPure(bytes(16))
    raises(ValueError, cipher.encrypt_block, bytes(15))
    raises(ValueError, cipher.encrypt_block, bytes(17))
    raises(ValueError, cipher.encrypt_blocks, bytes(20))
