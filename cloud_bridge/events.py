"""In-process event hub: registry, telemetry and command events fan out to
the dashboard's live stream and to plugins.

Each subscriber has a bounded queue; a subscriber that falls behind loses its
oldest events (counted), never blocks the bridge. Events are plain dicts with
a "type": device, presence, telemetry, command.
"""
import asyncio


class EventHub:
    def __init__(self, queue_size=1000):
        self.queue_size = queue_size
        self._subscribers = set()
        self.dropped = 0

    def subscribe(self):
        q = asyncio.Queue(self.queue_size)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q):
        self._subscribers.discard(q)

    def listened(self):
        """True when someone subscribed (an event need not be built otherwise)."""
        return bool(self._subscribers)

    def publish(self, event):
        for q in self._subscribers:
            if q.full():
                q.get_nowait()
                self.dropped += 1
            q.put_nowait(event)
