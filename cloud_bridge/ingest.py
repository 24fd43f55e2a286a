"""Telemetry ingest: NOTIFY frames -> store rows, batched, acknowledged after commit.

A transport awaits `add(rows)`; the rows of every caller within one batch
window go to the store in one transaction, and each caller resumes only when
that transaction committed, so a device (CoAP ACK, MQTT PUBACK) is answered
only for telemetry that is durable.
"""
import asyncio

from .store import prepare_telemetry, InvalidValue

MAX_SKEW = 86400          # a NOTIFY time further ahead than this is refused


def notify_rows(device, frame_body, sid, now):
    """[(device, service, object, t, value)] from a NOTIFY body [time, {oid: value}]."""
    if type(frame_body) is not list or len(frame_body) != 2 or type(frame_body[1]) is not dict:
        raise ValueError("NOTIFY body must be [time, {object: value}]")
    t = frame_body[0]
    if t is None:
        t = int(now)
    elif type(t) is not int or t < 0:
        raise ValueError("NOTIFY time must be Unix seconds or null")
    elif t > now + MAX_SKEW:
        raise ValueError("NOTIFY time %d is more than a day ahead of the bridge" % t)
    rows = [(device, sid, oid, t, value) for oid, value in frame_body[1].items()]
    try:
        prepare_telemetry(rows)  # the store's own checks: what it refuses fails this frame only
    except InvalidValue as e:
        raise ValueError(str(e))
    return rows


class Ingest:
    def __init__(self, store, max_batch=5000, window=0.02):
        self.store = store
        self.max_batch = max_batch
        self.window = window
        self._rows = []
        self._waiters = []
        self._flusher = None
        self.stored = 0

    async def add(self, rows):
        """Store rows; returns after the transaction holding them committed."""
        if not rows:
            return
        fut = asyncio.get_running_loop().create_future()
        self._rows.extend(rows)
        self._waiters.append(fut)
        if len(self._rows) >= self.max_batch:
            await self._flush()
        elif self._flusher is None:
            self._flusher = asyncio.get_running_loop().call_later(
                self.window, lambda: asyncio.ensure_future(self._flush()))
        await fut

    async def _flush(self):
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        rows, waiters = self._rows, self._waiters
        self._rows, self._waiters = [], []
        if not rows:
            return
        error = ConnectionError("telemetry not stored")
        try:
            await self.store.add_telemetry(rows)
            error = None
            self.stored += len(rows)
        except Exception as e:  # every waiter learns; nothing was acknowledged
            error = e
        finally:  # even when cancelled: no waiter is left hanging
            for w in waiters:
                if not w.done():
                    if error is None:
                        w.set_result(None)
                    else:
                        w.set_exception(error)

    async def close(self):
        await self._flush()

