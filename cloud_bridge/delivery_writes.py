"""The command-queue writes of every running delivery, batched across devices.

A group command or an OpenADR event to ten thousand devices starts ten
thousand deliveries; each takes its device's command and records it sent (one
write: store.claim_and_send_many, the claim is the record of the send), then
completes it with the answer and learns in that write whether the device has
another command queued (store.complete_and_look_many: when it has not, the
delivery ends without a third write to find the queue empty). Written one by
one that is two transactions per device. Here each of the two is a
coalesce.Coalesced over the store's many-item method (claim_and_send_many,
complete_and_look_many): the deliveries that reach the same step together
share one transaction. Each delivery still
waits for its own write to commit before it goes on (sends the frame,
reports the command done), so a device's state in the store is exact: an
answer not committed is not reported, and a crash leaves each command
queued, sent or final, as the queue resumes from (a sent one times out
unanswered; it is never sent twice).
"""
from .coalesce import Coalesced


class DeliveryWrites:
    """claim_and_send(device, mid), finish(command id, status, result).

    routed(): whether device routes are shared by instances (then a device whose
    route another instance holds gets nothing here)."""

    def __init__(self, store, config, clock, routed=lambda: False):
        self._claim = Coalesced(lambda sends: store.claim_and_send_many(
            sends, clock(), config.instance, routed()))
        self._finish = Coalesced(lambda items: store.complete_and_look_many(items, clock()))

    async def claim_and_send(self, device, mid):
        """The device's oldest queued command, now recorded sent by this instance with
        message id mid (send its frame), or None."""
        return await self._claim((device, mid))

    async def finish(self, command_id, status, result):
        """Complete it: (True, whether its device has another command queued), or
        (False, None) if it was already final (a late answer)."""
        outcome = await self._finish((command_id, status, result))
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome
