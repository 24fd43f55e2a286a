"""Command states the bridge no longer writes, written straight into a store for tests
(SQLite or PostgreSQL alike): a command `claimed` and not sent (what a bridge from
before claim_and_send_many left when it stopped between its claim and its send), and
a command recorded sent out of queue order. The bridge itself takes a command and
records it sent in one write (Store.claim_and_send_many)."""
from spot.cloud_bridge.store import Q


async def claimed(store, device, now, instance_id):
    """Mark the device's oldest queued, unexpired command claimed by instance_id at
    now, as an older bridge's claim did; the Command, or None if none was queued."""
    def script():
        r = yield Q("UPDATE commands SET status = 'claimed', claimed_by = ?, claimed_at = ? "
                    "WHERE id = (SELECT min(id) FROM commands WHERE device = ? AND "
                    "status = 'queued' AND (expires_at IS NULL OR expires_at > ?)) RETURNING id",
                    (instance_id, float(now), device, float(now)))
        return r.rows[0][0] if r.rows else None
    cid = await store._run(script)
    return None if cid is None else await store.get_command(cid)


async def sent(store, command_id, mid, now):
    """Record command_id (queued or claimed) sent with message id mid at now."""
    def script():
        r = yield Q("UPDATE commands SET status = 'sent', mid = ?, sent_at = ? WHERE id = ? "
                    "AND status IN ('queued', 'claimed') RETURNING id",
                    (mid, float(now), command_id))
        assert r.rows, "command %d is not queued or claimed" % command_id
    await store._run(script)
