"""One leader among the bridge instances sharing a PostgreSQL store.

Plugins that are one endpoint per deployment (an OpenADR VEN, an IEC 61850
MMS server, an XMPP account, an IEEE 2030.5 client) must not run twice: the
instance holding a session advisory lock on its own connection runs them,
the others wait for it. When the leader dies (kill -9, machine lost) its
session ends, PostgreSQL frees the lock, and the next instance that tries
(every `retry` seconds) takes over and starts the plugins. A leader that
loses its connection stops its plugins at once: it may no longer hold the
lock. See docs/scale-out.md.

    leadership = Leadership(conninfo, on_lead=plugins.start, on_lose=plugins.stop)
    await leadership.start(); ...; await leadership.stop()
"""
import asyncio
import logging

import psycopg

from .tasks import cancel_and_wait

log = logging.getLogger("spot.bridge.leader")

LEADER_LOCK = (7014, 1)   # advisory lock (class, key) of the deployment's leader


class Leadership:
    def __init__(self, conninfo, on_lead, on_lose, retry=2.0, check=2.0, name="?"):
        self.conninfo = conninfo
        self.on_lead = on_lead
        self.on_lose = on_lose
        self.retry = retry
        self.check = check
        self.name = name
        self.leading = False
        self.changes = 0          # times this instance became leader
        self._task = None
        self._conn = None
        self._stopping = False

    async def start(self):
        """Try once now (so a lone instance leads from its start), then keep trying."""
        self._stopping = False
        await self._try()
        self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self):
        # the flag as well as the cancel: on Python 3.11 a cancel that meets
        # asyncio.wait_for as its inner query completes can be swallowed, and _run's
        # loop went on for ever while stop() waited for it
        self._stopping = True
        await cancel_and_wait([self._task])
        self._task = None
        await self._step_down()

    async def _try(self):
        try:
            if self._conn is None:
                self._conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True), self.check * 5)
            if not self.leading:
                cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                               LEADER_LOCK)
                if (await cur.fetchone())[0]:
                    self.leading = True
                    self.changes += 1
                    log.warning("instance %s leads: it runs the single-endpoint plugins",
                                self.name)
                    await self.on_lead()
            else:   # still connected, so still holding it (or step down now)
                await asyncio.wait_for(self._conn.execute("SELECT 1"), self.check)
        except (psycopg.Error, asyncio.TimeoutError) as e:
            log.warning("leader lock connection lost (%s)", e or "no answer in time")
            await self._step_down()

    async def _step_down(self):
        conn, self._conn = self._conn, None
        if self.leading:
            self.leading = False
            log.warning("instance %s no longer leads: plugins stopped", self.name)
            try:
                await self.on_lose()
            except Exception:
                log.exception("stopping the plugins")
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                pass

    async def _run(self):
        while not self._stopping:
            await asyncio.sleep(self.check if self.leading else self.retry)
            await self._try()
