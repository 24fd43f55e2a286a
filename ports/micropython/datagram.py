"""Receiving UDP datagrams on a small heap (the CoAP link of the board runtime and
ports/micropython/coap_loop).

A fresh receive buffer per datagram is a block of up to max_datagram + 1 bytes that
a fragmented heap may not have even with kilobytes free. Where the socket has
recvfrom_into() (CPython) datagrams land in one preallocated buffer. MicroPython's
sockets have none, and their readinto() is a stream read that joins datagrams
queued back to back (it reads until the buffer is full or nothing is left), so there
recvfrom() stays, with a spare block of the same size kept aside: when recvfrom()
finds no room, the spare is given back and the receive tried once more (the datagram
waits in the socket meanwhile), and the spare is taken again at a later receive.
Addresses come out hashable: the unix port gives raw sockaddr bytearrays, copied to
bytes except the one set as `known` (the bridge's), which is handed out itself."""


def addr_key(addr):
    """A socket address as a hashable key (bytes for the unix port's bytearrays)."""
    return bytes(addr) if type(addr) is bytearray else addr


class Receiver:
    """recv() -> (datagram bytes, sender address) from sock, at most size bytes; buf,
    if given, is the block to use (size bytes, taken early while the heap was whole)."""

    def __init__(self, sock, size, buf=None):
        self.sock = sock
        self.size = size
        # the receive buffer (CPython: mv, a view of it for recvfrom_into()), else the spare
        self.buf = buf if buf is not None and len(buf) == size else bytearray(size)
        self.mv = memoryview(self.buf) if hasattr(sock, 'recvfrom_into') else None
        self.spare_used = 0            # receives that needed the spare block
        self.known = None              # an address key (the bridge's) handed out as it is

    def recv(self):
        sock = self.sock
        if self.mv is not None:
            n, addr = sock.recvfrom_into(self.buf)
            return bytes(self.mv[:n]), addr
        try:
            data, addr = sock.recvfrom(self.size)
        except MemoryError:
            if self.buf is None:
                raise
            self.buf = None
            self.spare_used += 1
            import gc
            gc.collect()
            data, addr = sock.recvfrom(self.size)
            # the spare again at once, from the block that recvfrom() has just freed:
            # after the datagram is handled, its objects may have split that block
            try:
                self.buf = bytearray(self.size)
            except MemoryError:
                pass
        else:
            if self.buf is None:
                try:
                    self.buf = bytearray(self.size)
                except MemoryError:
                    pass
        known = self.known
        return data, known if addr == known else addr_key(addr)
