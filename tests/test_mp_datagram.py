"""ports/micropython/datagram.Receiver on a small heap: when recvfrom() finds no room
for its buffer, the spare block is given back and the receive tried once more, and the
spare is taken again at once (the block recvfrom() has just freed), so the next
datagram still has a block to land in. The socket is a test double (FakeUdpSocket)
whose recvfrom() fails with MemoryError while told to; the real interpreter runs
the same code in bench/footprint.py and tests/test_mp_real_*.py."""
import pytest

from spot.ports.micropython.datagram import Receiver

SIZE = 401


class FakeUdpSocket:
    """Test double of a MicroPython UDP socket: recvfrom() only (no recvfrom_into), the
    next `starved` calls raise MemoryError as a full heap does."""

    def __init__(self, datagrams):
        self.datagrams = list(datagrams)
        self.starved = 0

    def recvfrom(self, n):
        if self.starved:
            self.starved -= 1
            raise MemoryError("memory allocation failed, allocating %d bytes" % n)
        return self.datagrams.pop(0)[:n], b"addr"


def test_a_receive_without_room_uses_the_spare_and_takes_it_back_at_once():
    sock = FakeUdpSocket([b"first", b"second"])
    rx = Receiver(sock, SIZE)
    sock.starved = 1
    assert rx.recv() == (b"first", b"addr")
    assert rx.spare_used == 1
    assert rx.buf is not None and len(rx.buf) == SIZE     # held again before the next one
    sock.starved = 1
    assert rx.recv() == (b"second", b"addr")               # so this one has it too
    assert rx.spare_used == 2


def test_without_a_spare_a_receive_without_room_raises_and_leaves_the_datagram():
    sock = FakeUdpSocket([b"kept"])
    rx = Receiver(sock, SIZE)
    rx.buf = None
    sock.starved = 1
    with pytest.raises(MemoryError):
        rx.recv()
    assert sock.datagrams == [b"kept"]
    assert rx.recv() == (b"kept", b"addr")


def test_a_receiver_keeps_the_block_it_is_given_as_its_spare():
    block = bytearray(SIZE)
    assert Receiver(FakeUdpSocket([]), SIZE, block).buf is block
    assert Receiver(FakeUdpSocket([]), SIZE, bytearray(SIZE - 1)).buf is not None   # wrong size: its own


def test_the_device_takes_at_boot_the_receive_blocks_its_links_use():
    from spot.ports.micropython import device, device_coap, device_mqtt
    assert device._RX_COAP == device_coap._MAX_DATAGRAM + 1
    assert device._RX_MQTT == device_mqtt._READ
