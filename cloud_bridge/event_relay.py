"""Every instance's bridge events reach the plugins on the leader (PostgreSQL NOTIFY).

With several instances the plugins run on the leader only (cloud_bridge.leader),
but telemetry, presence, registration and command events happen on the
instance a device talks to. Each instance that does not lead forwards its
events: it reads them from its own hub, encodes each losslessly (the
store's JSON for wire values), packs them into notifications of at most
MAX_PAYLOAD bytes and sends them on the channel spot_events, a turn's worth
in one transaction. The leader listens on that channel (only while it
leads) and publishes what arrives in its own hub, marked "relayed", so its
plugins and its dashboard stream see the whole deployment.

Like the hub itself this is best effort: events are views of what the store
holds. An instance whose hub queue overflows loses the oldest (counted in
events_dropped); a notification that cannot be sent is counted in
events_not_relayed and dropped; around a change of leader a few events may
arrive twice or not at all. Plugins that must not miss a state read it from
the store (ctx.latest, ctx.devices).
"""
import asyncio
import logging

import psycopg

from .store import Q, StoreError, dump_value, load_value
from .tasks import cancel_and_wait

log = logging.getLogger("spot.bridge.events")

CHANNEL = "spot_events"
MAX_PAYLOAD = 7000        # bytes per notification (PostgreSQL's limit is 8000)
MAX_BATCH = 2000          # events sent in one transaction at most


def pack(events):
    """[payload text] holding the events (each a dict), none over MAX_PAYLOAD bytes;
    an event that alone is too big is left out. Returns (payloads, left out)."""
    payloads, part, size, skipped = [], [], 2, 0
    for e in events:
        text = dump_value(e)
        n = len(text.encode("utf-8")) + 1
        if n + 2 > MAX_PAYLOAD:
            skipped += 1
            continue
        if size + n > MAX_PAYLOAD:
            payloads.append("[" + ",".join(part) + "]")
            part, size = [], 2
        part.append(text)
        size += n
    if part:
        payloads.append("[" + ",".join(part) + "]")
    return payloads, skipped


def unpack(payload):
    """The events of one notification ([] for anything that is not a list of dicts)."""
    try:
        events = load_value(payload)
    except (ValueError, StoreError):
        return []
    return [e for e in events if type(e) is dict] if type(events) is list else []


class EventRelay:
    def __init__(self, bridge, store, leadership, instance):
        self.bridge = bridge
        self.store = store
        self.leadership = leadership
        self.instance = instance
        self.sent = self.received = 0
        self._tasks = []
        m = bridge.metrics
        m.describe("events_not_relayed", "events this instance could not forward to the leader")

    async def start(self):
        queue = self.bridge.hub.subscribe()
        self._tasks = [asyncio.ensure_future(self._forward(queue)),
                       asyncio.ensure_future(self._receive())]
        self._queue = queue
        return self

    async def stop(self):
        await cancel_and_wait(self._tasks)
        self._tasks = []
        self.bridge.hub.unsubscribe(self._queue)

    # ------------------------------------------------------------ sending

    async def _forward(self, queue):
        while True:
            events = [await queue.get()]
            while not queue.empty() and len(events) < MAX_BATCH:
                events.append(queue.get_nowait())
            if self.leadership.leading:
                continue   # its own plugins saw them in its hub
            events = [e for e in events if not e.get("relayed")]
            if events:
                await self._send(events)

    async def _send(self, events):
        payloads, skipped = pack(events)

        def script():
            for p in payloads:
                yield Q("SELECT pg_notify(?, ?)", (CHANNEL, p))
        try:
            await self.store._run(script)
            self.sent += len(events) - skipped
        except StoreError as e:
            skipped = len(events)
            log.warning("events not relayed to the leader: %s", e)
        if skipped:
            self.bridge.metrics.inc("events_not_relayed", skipped)

    # ------------------------------------------------------------ receiving (leader)

    async def _receive(self, every=1.0):
        conn, listening = None, False
        while True:
            try:
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(self.store.conninfo,
                                                                 autocommit=True)
                    listening = False
                if self.leadership.leading != listening:
                    await conn.execute(("LISTEN " if not listening else "UNLISTEN ") + CHANNEL)
                    listening = not listening
                async for n in conn.notifies(timeout=every):
                    if listening and self.leadership.leading:
                        for event in unpack(n.payload):
                            event["relayed"] = True
                            self.received += 1
                            self.bridge.hub.publish(event)
            except asyncio.CancelledError:
                if conn is not None:
                    await conn.close()
                raise
            except psycopg.Error as e:
                log.warning("event relay connection lost (%s): reconnecting", e)
                if conn is not None:
                    try:
                        await conn.close()
                    except Exception:
                        pass
                conn = None
                await asyncio.sleep(every)
