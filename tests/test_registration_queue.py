"""cloud_bridge.registration.Registrar's queue of a device announcing again while its
registration is written (two batches at once, as on PostgreSQL), against a test double
of the store: every ANNOUNCE handed in is answered, the queue is emptied, and it is
bounded."""
import asyncio

from spot.cloud_bridge.registration import MAX_WAITING_PER_DEVICE, Refused, Registrar
from spot.cloud_bridge.store import Announce
from waiting import until


class StoreDouble:
    """A test double of a PostgreSQL store's registration batch: the first batch hangs
    until cancelled, the others register every device (nothing waiting for them)."""

    dialect = "postgresql"   # two batches at once: the per-device queue is used

    def __init__(self):
        self.batches = []

    async def register_devices_waiting(self, announces, then):
        self.batches.append([a.id for a in announces])
        if len(self.batches) == 1:
            await asyncio.Event().wait()
        return [None] * len(announces), set(), None


def announce(device):
    return Announce(device, [[0x10, 1, 0]], [], 0, 1_700_000_000.0)


def test_an_announce_queued_behind_a_cancelled_batch_is_answered_and_the_queue_emptied():
    async def main():
        store = StoreDouble()
        registrar = Registrar(store)
        told = []

        def done(name):
            return lambda outcome, error: told.append((name, outcome, type(error)))
        registrar.register_nowait(announce("hp-1"), None, done("first"))
        registrar.register_nowait(announce("hp-1"), None, done("second"))   # waits for it
        assert await until(lambda: store.batches == [["hp-1"]], timeout=5)
        for task in list(registrar._batch._flushers):   # the batch's writer is cancelled
            task.cancel()
        await until(lambda: not registrar._batch._flushers, timeout=5)
        registrar.register_nowait(announce("hp-1"), None, done("third"))
        await until(lambda: len(told) == 3, timeout=5)
        assert told == [("first", None, asyncio.CancelledError),
                        ("second", None, asyncio.CancelledError),
                        ("third", False, type(None))]
        assert registrar._writing == {}
    asyncio.run(main())


def test_a_coap_device_announcing_again_beyond_the_queue_bound_is_answered_busy_at_once():
    """A known id's refreshes pass no admission limit: a device (or a spoofer of its
    address) announcing in a loop while its registration is written would grow the
    queue without end."""
    async def main():
        store = StoreDouble()
        registrar = Registrar(store)
        told = []
        registrar.register_nowait(announce("hp-1"), None, lambda o, e: told.append(e))
        assert await until(lambda: store.batches == [["hp-1"]], timeout=5)
        for _ in range(MAX_WAITING_PER_DEVICE + 3):
            registrar.register_nowait(announce("hp-1"), None, lambda o, e: told.append(e),
                                      bounded=True)
        assert len(registrar._writing["hp-1"]) == MAX_WAITING_PER_DEVICE
        assert len(told) == 3 and all(type(e) is Refused and e.reason == "rate_device"
                                      for e in told)
        for task in list(registrar._batch._flushers):
            task.cancel()
        await until(lambda: not registrar._batch._flushers, timeout=5)
    asyncio.run(main())


def test_mqtt_births_of_one_device_all_wait_for_its_registration_unbounded():
    """A broker may hand over many births of one device at once (its persistent session
    kept them while the bridge was away); one refused would only come back after a
    reconnect, so they are not bounded."""
    async def main():
        store = StoreDouble()
        registrar = Registrar(store)
        told = []
        for _ in range(MAX_WAITING_PER_DEVICE + 3):
            registrar.register_nowait(announce("hp-1"), None, lambda o, e: told.append(e))
        assert len(registrar._writing["hp-1"]) == MAX_WAITING_PER_DEVICE + 2
        assert told == []
        for task in list(registrar._batch._flushers):
            task.cancel()
        await until(lambda: not registrar._batch._flushers, timeout=5)
    asyncio.run(main())
