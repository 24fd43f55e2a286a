"""The command-queue writes of every running delivery, batched across devices.

A group command or an OpenADR event to ten thousand devices starts ten
thousand deliveries; each claims its device's command, records it sent and
completes it with the answer. Written one by one that is three transactions
per device. Here each of the three is a coalesce.Coalesced over the store's
many-item method (claim_many, mark_sent_many, complete_many): the deliveries
that reach the same step together share one transaction. Each delivery still
waits for its own write to commit before it goes on (sends the frame,
reports the command done), so a device's state in the store is exact: an
answer not committed is not reported, and a crash leaves each command
queued, claimed, sent or final, as the queue resumes from.
"""
from .coalesce import Coalesced


class DeliveryWrites:
    """claim(device), sent(command id, mid), finish(command id, status, result)."""

    def __init__(self, store, config, clock):
        self._claim = Coalesced(
            lambda devices: store.claim_many(devices, clock(), config.instance))
        self._sent = Coalesced(
            lambda sends: store.mark_sent_many(sends, clock(), config.instance))
        self._finish = Coalesced(lambda items: store.complete_many(items, clock()))

    async def claim(self, device):
        """The device's oldest queued command, now claimed by this instance, or None."""
        return await self._claim(device)

    async def sent(self, command_id, mid):
        """Record it sent (raises CommandStateError if it is no longer ours to send)."""
        await self._sent((command_id, mid))

    async def finish(self, command_id, status, result):
        """Complete it; False if it was already final (a late answer)."""
        return await self._finish((command_id, status, result))
