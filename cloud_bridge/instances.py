"""Several bridge instances on one PostgreSQL store: routes, wake-ups, instance ids.

Every `spot bridge` sharing a PostgreSQL database runs one `Instances`
(docs/scale-out.md). It keeps:

- The instance id unique: a session advisory lock on the instance's own
  connection, keyed by the id. A second bridge started with an id that runs
  already is refused at start (DuplicateInstance), before it binds a port.
- The route of every device reached through a transport bound to one process
  (CoAP: the device's address is known to the instance it registered with):
  table device_routes (device -> instance, transport, address, at). An
  accepted ANNOUNCE records it, in its registration's transaction; when the
  device registers with another instance the route is handed over in that
  transaction: the new holder's id is written and commands the old holder
  claimed but never sent go back to the queue. Devices on a transport every instance reaches (MQTT through the
  shared broker: `shared_by_instances = True`) have no route row; any
  instance delivers their commands and the queue's claim gives each command
  to one of them.
- Commands claimed and never sent by an instance that died: a running instance
  whose id they carry frees them at its start; otherwise any instance that
  finds claims older than CLAIM_GRACE whose instance id no running bridge
  holds (its lock is free) puts them back in the queue.
- Prompt delivery of commands queued on another instance: the instance that
  queued a command for a device it does not route sends NOTIFY spot_wake; the
  holders then look for queued commands of the devices they route (one
  query) and start delivering. A hand-over sends NOTIFY spot_route; the
  other instances drop their route of every device handed over since they
  last looked (and forget its address, so it must register again to be
  served there). Both lookups also run every `poll` seconds, so a
  notification lost with a broken connection delays, never loses, a command.

SQLite stores are single-instance: the bridge makes no Instances for them.
"""
import asyncio
import logging
import zlib

import psycopg

from .pg_binary import column_array
from .store import Q, StoreError, s_release_claims
from .tasks import cancel_and_wait

log = logging.getLogger("spot.bridge.instances")

WAKE = "spot_wake"        # payload: the sender's id; queued commands may wait for your devices
ROUTE = "spot_route"      # payload: the sender's id; it took over device routes
INSTANCE_LOCK = 7013      # advisory lock class of instance ids (7012: schema creation)
ROUTE_WINDOW = 60.0       # seconds of hand-overs re-read in each lookup (clock skew margin)
CLAIM_GRACE = 30.0        # seconds a claim may wait for its send before it counts as orphaned

ROUTES_DDL = (
    """CREATE TABLE IF NOT EXISTS device_routes (
        device text PRIMARY KEY,
        instance text NOT NULL,
        transport text NOT NULL,
        address text,
        at double precision NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS device_routes_instance ON device_routes (instance, device)",
    "CREATE INDEX IF NOT EXISTS device_routes_at ON device_routes (at)",
)


class DuplicateInstance(StoreError):
    """Another running bridge on this store has the same instance id."""


def instance_key(instance):
    """The advisory-lock key (a signed 32-bit int) of an instance id."""
    k = zlib.crc32(instance.encode("utf-8"))
    return k - (1 << 32) if k >= 1 << 31 else k


def _s_ddl():
    yield Q("SELECT pg_advisory_xact_lock(7012)", ())   # the store's schema lock
    for stmt in ROUTES_DDL:
        yield Q(stmt, ())


# the routes' write (%s: the rows' source) and the hand-over's requeue of the unsent
# claims of other instances (%s: which devices), as _s_take_routes and RouteRecord run them.
# The requeue takes the queued rows too (unchanged by it): a command the old holder claims
# after the statement's snapshot (it was queued there) is then waited for and re-read as
# claimed, and queued again; a condition on 'claimed' alone skips it, and it stays the
# old holder's, never sent.
_ROUTE_UPSERT = ("INSERT INTO device_routes (device, instance, transport, address, at) %s "
                 "ON CONFLICT (device) DO UPDATE SET instance = excluded.instance, "
                 "transport = excluded.transport, address = excluded.address, at = excluded.at")
_REQUEUE = ("UPDATE commands SET status = 'queued', claimed_by = NULL, claimed_at = NULL "
            "WHERE device %s AND status IN ('queued', 'claimed') "
            "AND claimed_by IS DISTINCT FROM ?")


def _s_take_routes(instance, routes, now):
    """Record routes [(device, transport, address)] as held by instance; return the
    devices taken over from another instance (their unsent claims are queued again)."""
    devices = [r[0] for r in routes]
    r = yield Q("SELECT device FROM device_routes WHERE device = ANY(?) AND instance <> ? "
                "ORDER BY device FOR UPDATE", (devices, instance))
    taken = [row[0] for row in r.rows]
    yield Q(_ROUTE_UPSERT % "SELECT d, ?, t, a, ? FROM unnest(?::text[], ?::text[], "
            "?::text[]) AS n(d, t, a) ORDER BY d",
            (instance, float(now), devices, [r[1] for r in routes], [r[2] for r in routes]))
    if taken:
        # claimed by the instance that held the route and never sent (it died, or the
        # device left it): the new holder delivers them
        yield Q(_REQUEUE % "= ANY(?)", (taken, instance))
        yield Q("SELECT pg_notify(?, ?)", (ROUTE, instance))
    return taken


def _s_orphaned_claims(instance, before):
    """Free the claims (made at or before `before`) of instance ids no running bridge
    holds: the instance died between claiming and sending. Returns their devices."""
    r = yield Q("SELECT DISTINCT claimed_by FROM commands WHERE status = 'claimed' "
                "AND claimed_at <= ? AND claimed_by <> ?", (float(before), instance))
    devices = []
    for (owner,) in r.rows:
        # conflicts with the session lock a running instance holds on its id; a
        # transaction lock, so it is released at commit
        got = yield Q("SELECT pg_try_advisory_xact_lock(?, ?)",
                      (INSTANCE_LOCK, instance_key(owner)))
        if got.rows[0][0]:
            devices += yield from s_release_claims(owner)
    return devices


def _s_waiting(instance, since):
    """Devices routed through instance with commands queued since `since` (older ones
    were found then, or wait for their device to be heard: store-and-forward)."""
    r = yield Q("SELECT DISTINCT c.device FROM commands c JOIN device_routes r "
                "ON r.device = c.device WHERE r.instance = ? AND c.status = 'queued' "
                "AND c.created_at >= ?", (instance, float(since)))
    return [row[0] for row in r.rows]


def _s_lost(instance, since):
    r = yield Q("SELECT device FROM device_routes WHERE instance <> ? AND at >= ?",
                (instance, float(since)))
    return [row[0] for row in r.rows]


def _s_route_of(device):
    r = yield Q("SELECT instance, transport, address, at FROM device_routes WHERE device = ?",
                (device,))
    return tuple(r.rows[0]) if r.rows else None


class RouteRecord:
    """A registration batch's routes to record as this instance's in its transaction
    (Store.register_devices_waiting's `then`): called with the ids registered, the
    transaction script s_record; or, on PostgreSQL, folded into the registration's one
    statement (sql_parts: the same hand-over, its notification included)."""

    def __init__(self, instances, routes):
        self.instances = instances
        self.routes = routes      # device -> (device, transport, address)

    def __call__(self, ids):
        return self.instances.s_record([self.routes[d] for d in ids if d in self.routes])

    def sql_parts(self, written):
        """(CTEs, their parameters, result branches, their parameters) for a statement
        whose CTE `written` (id) holds the devices registered: the routes of those
        recorded (result rows (3, device)), the ones taken from another instance (rows
        (4, device)) with their unsent claims queued again and NOTIFY spot_route."""
        me = self.instances.instance
        rows = sorted(self.routes.values())
        ctes = (
            "rin AS (SELECT * FROM unnest(?::text[], ?::text[], ?::text[]) AS r(device, "
            "transport, address) WHERE r.device IN (SELECT id FROM " + written + ")), "
            "rold AS (SELECT device FROM device_routes WHERE device IN (SELECT device FROM rin) "
            "AND instance <> ? ORDER BY device FOR UPDATE), "
            "rup AS (" + _ROUTE_UPSERT % ("SELECT device, ?, transport, address, ? FROM rin "
                                          "WHERE (SELECT count(*) FROM rold) >= 0 "   # rold first
                                          "ORDER BY device") + " RETURNING device), "
            "rq AS (" + _REQUEUE % "IN (SELECT device FROM rold)" + "), "
            "rn AS (SELECT pg_notify(?, ?) FROM (SELECT 1 FROM rold LIMIT 1) AS x)")
        params = tuple(column_array("text", [r[k] for r in rows]) for k in range(3)) + (
            me, me, float(self.instances.bridge.clock()), me, ROUTE, me)
        selects = (" UNION ALL SELECT 3, device, NULL FROM rup "
                   "UNION ALL SELECT 4, device, NULL FROM rold "
                   "UNION ALL SELECT 5, NULL, NULL FROM rn")
        return ctes, params, selects, ()

    @staticmethod
    def result(rows):
        """sql_parts' result rows (kind, device) -> what s_record returns."""
        return ([d for k, d in rows if k == 3], {d for k, d in rows if k == 4})


class Instances:
    """This instance's part in a multi-instance deployment (see the module docstring)."""

    def __init__(self, bridge, store, instance, poll=5.0):
        self.bridge = bridge
        self.store = store
        self.instance = instance
        self.poll = poll
        self.held = set()      # devices whose route this instance recorded and still holds
        self.stopped = False   # stop() began: registrations are refused (busy)
        self._wake_due = False
        self._looked = 0.0     # when hand-overs were last read
        self._look = asyncio.Event()
        self._conn = None
        self._tasks = []
        self.wakes_sent = self.wakes_heard = 0
        m = bridge.metrics
        m.describe("route_handovers", "device routes this instance took over")
        m.describe("orphaned_claims", "commands a dead instance claimed, queued again here")
        m.gauge("routes_held", lambda: len(self.held), "devices routed through this instance")
        m.gauge("wakeups_sent", lambda: self.wakes_sent,
                "NOTIFY wake-ups sent for commands queued for other instances' devices")
        m.gauge("wakeups_heard", lambda: self.wakes_heard,
                "notifications from other instances (wake-ups, hand-overs)")

    # ------------------------------------------------------------ lifecycle

    async def start(self):
        await self.store._run(_s_ddl)
        await self._connect()
        # this id runs nowhere else (its lock is ours): its unsent claims are from before
        # a crash, and are delivered again
        freed = await self.store.release_claims(self.instance)
        if freed:
            log.warning("%d command(s) claimed before this instance stopped are queued again",
                        len(freed))
        self._looked = self.bridge.clock() - ROUTE_WINDOW
        self.bridge.registrar.instances = self   # routes recorded with the registrations
        self._tasks = [asyncio.ensure_future(self._listen()),
                       asyncio.ensure_future(self._look_forever())]
        return self

    async def stop(self):
        """Stop serving: registrations from now on are refused busy (nothing stored, no
        route under this id, which no running bridge holds once its lock goes); the
        ones in flight are stored first, while the lock is still held."""
        self.stopped = True
        await self.bridge.registrar.settled()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _connect(self):
        """The instance's own connection: it holds the instance-id lock and listens."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.store.conninfo, autocommit=True)
        except psycopg.Error as e:
            raise StoreError("postgresql: %s" % e) from e
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(?, ?)".replace("?", "%s"),
                                     (INSTANCE_LOCK, instance_key(self.instance)))
            if not (await cur.fetchone())[0]:
                raise DuplicateInstance(
                    "instance %r is already running on this store: give each bridge its own "
                    "[bridge] instance (or --instance)" % self.instance)
            await conn.execute("LISTEN " + WAKE)
            await conn.execute("LISTEN " + ROUTE)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _listen(self):
        """Wait for notifications; reconnect (and look again) when the link breaks."""
        while True:
            try:
                if self._conn is None:
                    await self._connect()
                    self._look.set()   # what was missed while away
                async for n in self._conn.notifies():
                    if n.payload == self.instance:
                        continue
                    self.wakes_heard += 1
                    self._look.set()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, StoreError, OSError) as e:
                # DuplicateInstance here: another bridge took this id while the link was
                # down; both now serve under one id until one of them is stopped
                (log.error if isinstance(e, DuplicateInstance) else log.warning)(
                    "instance link to the store lost (%s): reconnecting", e)
                conn, self._conn = self._conn, None
                if conn is not None:
                    try:
                        await conn.close()
                    except Exception:
                        pass
                await asyncio.sleep(1.0)

    async def _look_forever(self):
        # the flag as well as stop()'s cancel: on Python 3.11 a cancel that meets
        # asyncio.wait_for as the event is set can be swallowed (as in leader.Leadership)
        while not self.stopped:
            try:
                await asyncio.wait_for(self._look.wait(), self.poll)
            except asyncio.TimeoutError:
                pass
            self._look.clear()
            try:
                await self.look()
            except StoreError as e:
                self.bridge.store_failed("routes", e)

    # ------------------------------------------------------------ routes

    def route_to_record(self, device, transport, address):
        """(transport, address) to record as this instance's route of device with its
        registration (registration.Registrar, one transaction), or None: the device
        is on a transport every instance reaches, or its route is held here already."""
        link = self.bridge.transports.get(transport)
        if getattr(link, "shared_by_instances", False) or device in self.held:
            return None
        return (transport, address)

    def s_record(self, routes):
        """Transaction script: record routes [(device, transport, address)] as this
        instance's; (their devices, the set of those taken over from another instance,
        whose unsent claims are queued again)."""
        latest = {r[0]: r for r in routes}   # one row per device
        if not latest:   # every device with a route was refused: no statement to run
            return [], set()
        taken = yield from _s_take_routes(self.instance, sorted(latest.values()),
                                          self.bridge.clock())
        return list(latest), set(taken)

    def route_record(self, routes):
        """The `then` of the registration batch recording routes {device: (device,
        transport, address)}: a RouteRecord."""
        return RouteRecord(self, routes)

    def recorded(self, devices, taken):
        """The routes of s_record committed: the devices taken over (a set)."""
        self.held.update(devices)
        if taken:
            self.bridge.metrics.inc("route_handovers", len(taken))
            log.info("took over the routes of %d device(s), e.g. %s", len(taken), min(taken))
        return taken

    async def route_of(self, device):
        """(instance, transport, address, at) of the device's route, or None."""
        return await self.store._run(lambda: _s_route_of(device), write=False)

    # ------------------------------------------------------------ wake-ups

    def wake(self):
        """Tell the other instances (once per loop turn) that commands were queued
        for devices this instance does not route."""
        if not self._wake_due:
            self._wake_due = True
            asyncio.ensure_future(self._send_wake())

    async def _send_wake(self):
        await asyncio.sleep(0)   # the rest of this turn's kicks share the notification
        self._wake_due = False

        def script():
            yield Q("SELECT pg_notify(?, ?)", (WAKE, self.instance))
        try:
            await self.store._run(script)
            self.wakes_sent += 1
        except StoreError as e:   # the holders' periodic look still finds the commands
            log.warning("wake-up not sent: %s", e)

    def look_soon(self):
        """Look (below) again soon, after a look that may have missed a route."""
        self._look.set()

    async def look(self):
        """Drop routes other instances took over; queue again what dead instances claimed;
        deliver what waits for devices here."""
        now = self.bridge.clock()
        freed = await self.store._run(
            lambda: _s_orphaned_claims(self.instance, now - CLAIM_GRACE))
        if freed:
            self.bridge.metrics.inc("orphaned_claims", len(freed))
        for device in freed:
            if device in self.bridge.routes:
                self.bridge._kick(device)
        since, self._looked = self._looked, now
        for device in await self.store._run(
                lambda: _s_lost(self.instance, since - ROUTE_WINDOW), write=False):
            if device in self.held or device in self.bridge.routes:
                self.lose(device)
        for device in await self.store._run(
                lambda: _s_waiting(self.instance, since - ROUTE_WINDOW), write=False):
            if device in self.held and device not in self.bridge._stalled and (
                    self.bridge.presence.get(device) == "online"
                    or device in self.bridge._registering):   # kicked once registered
                self.bridge._kick(device)

    def lose(self, device):
        """Another instance holds the device's route now: stop serving it here."""
        self.held.discard(device)
        via = self.bridge.routes.get(device)
        link = self.bridge.transports.get(via)
        if link is None or getattr(link, "shared_by_instances", False):
            return
        self.bridge.routes.pop(device, None)
        forget = getattr(link, "forget", None)
        if forget is not None:
            forget(device)
        log.info("%s is routed through another instance now", device)
