"""The bridge service: registry, presence, telemetry, command queue, access control.

Transports (CoAP, MQTT, or in-process for tests) hand it what devices send
with `device_frame(via, device, frame)` and deliver its commands through
their `request(device, frame, timeout)`; the HTTP API and plugins use the
facade methods (devices, submit, push_plan, broadcast, pair, ...). All
durable state is in the store, so a restarted bridge (or another instance
sharing the store) carries on: queued commands are delivered when their
device is next heard from, and telemetry is acknowledged only once stored.
"""
import asyncio
import logging
import time
from functools import partial

from ..core import frame as F
from ..core import roster as R
from ..core.errors import SpotError, UNSUPPORTED, NOT_AUTHORISED, MALFORMED, UNKNOWN_OBJECT
from ..core.errors import BUSY, OUT_OF_RANGE
from ..core.node import A_ID, A_SERVICES, A_CONSUMES, A_FLAGS, FLAG_SLEEPY
from ..core.plans import CANCEL, MAX_PRIMACY
from ..core.services import PLANS
from .events import EventHub
from .frame_decode import decode as decode_frame, encode as encode_frame
from .ingest import Ingest, TimeTaken, notify_rows, settle
from .device_clock import DeviceClocks
from .metrics import Metrics
from .peer_log import PeerLog
from .registration import (Admission, Claim, Refused, Registrar, check_device_id,
                           registration_digest)
from .delivery_writes import DeliveryWrites
from .slots import Slots
from .subscriptions import SubscriptionBook
from .tasks import cancel_and_wait
from . import store as S
from . import fleet_power

log = logging.getLogger("spot.bridge")

ROLE_IDS = {name: rid for rid, name in R.ROLE_NAMES.items()}
OWNER = R.ROLE_NAMES[R.OWNER]
SLOT_HOLD = 5.0   # seconds an unanswered command exchange counts against commands_in_flight


class Forbidden(PermissionError):
    """The actor is not paired with the device in a role that allows this."""


class BadRequest(ValueError):
    """A command or plan that cannot be sent as it is."""


class Conflict(Exception):
    """A change that would leave a device without an owner."""


def _once(fn):
    """fn, callable any number of times, called on the first call only."""
    called = []

    def call():
        if not called:
            called.append(True)
            fn()
    return call


def allowed(role_name, op, sid):
    """Does a role (by name) allow op on service sid? (core.roster's policy)"""
    return R.role_allows(ROLE_IDS[role_name], op, sid)


# device_frame_nowait, announce_nowait: the answer comes by callback
PENDING = object()


class Bridge:
    def __init__(self, config, store, clock=time.time):
        self.config = config
        self.store = store
        self.clock = clock
        self.hub = EventHub()
        self.metrics = Metrics()
        self.ingest = Ingest(store)
        self.transports = {}   # name -> transport with request() and broadcast()
        self.routes = {}       # device -> transport name it was last heard on
        self.known = set()     # registered devices (a cache of the store)
        self.presence = {}     # device -> presence as last written
        self.plugin_actors = {}  # actor -> role name, paired with every device
        self.pairing = None    # a cloud_bridge.pairing.PairingService when a keyring is set
        self._seen = {}        # device -> last time heard, not yet written
        self._delivery = {}    # device -> delivery task
        self._kicked = set()   # devices kicked while their delivery ran: look again after it
        self._registering = {}   # device -> its registrations in flight
        self._kicked_registering = set()   # kicked meanwhile: delivered when it is stored
        self._deleting = {}   # device -> its deletions in flight (its refreshes are written)
        self._register_audits = {}   # transport -> its first registration's audit entry
        self._in_flight = Slots(config.commands_in_flight)
        self._stalled = set()  # devices whose last command timed out: retry when heard
        self._mids = {}
        self._tasks = []
        self.peers = PeerLog(self.metrics)          # refused peer input: counted, logged rarely
        self.admission = Admission(config, clock)   # who may register which id, how fast
        self.registrar = Registrar(store)           # ANNOUNCEs arriving together: one commit
        self.writes = DeliveryWrites(store, config, clock,   # deliveries' writes, batched
                                     routed=lambda: self.instances is not None)
        self.store_problem = None   # the last store failure not yet resolved (health)
        self.store_corrupt = False  # the database is damaged: store nothing more in it
        self._store_log = PeerLog(self.metrics, metric="store_errors")
        self.subscriptions = SubscriptionBook()   # who owns which subscription
        self.clocks = DeviceClocks()   # devices whose clock the bridge sets (spec 3.1)
        self.instances = None   # cloud_bridge.instances.Instances when instances share the store
        self._describe_metrics()
        # the counters every frame moves, their keys made once
        self._received = tuple(Metrics.key("frames_received", op=op) for op in F.OP_NAMES)
        self._rows_stored = Metrics.key("telemetry_rows")

    def _describe_metrics(self):
        m = self.metrics
        m.describe("frames_received", "SPOT frames received from devices, by operation")
        m.describe("frames_rejected", "frames dropped or refused, by reason")
        m.describe("telemetry_rows", "telemetry values stored")
        m.describe("telemetry_pruned", "telemetry values deleted by retention")
        m.describe("clock_sets", "device clocks set by the bridge, by outcome")
        m.describe("commands", "commands by final status")
        m.describe("store_errors", "store operations that failed, by kind")
        m.describe("telemetry_not_stored", "telemetry frames refused because the store failed")
        m.describe("registrations_not_stored", "MQTT births not acknowledged because their "
                                               "registration was not stored")
        m.describe("registrations_unchanged", "re-registrations answered without a store "
                                              "write: what they hold was stored already")
        m.gauge("devices", lambda: len(self.known), "registered devices")
        m.gauge("devices_online", lambda: sum(1 for p in self.presence.values() if p == "online"),
                "devices online")
        m.gauge("events_dropped", lambda: self.hub.dropped, "events a slow subscriber lost")

    # ------------------------------------------------------------ lifecycle

    async def start(self):
        for d in await self.store.list_devices():
            self.known.add(d.id)
            self.presence[d.id] = d.presence
            self.admission.registered(d.id, d.credential_ref)
        self._tasks.append(asyncio.ensure_future(self._sweep_forever()))
        self._tasks.append(asyncio.ensure_future(fleet_power.sample_forever(self)))

    async def stop(self):
        await cancel_and_wait(self._tasks + list(self._delivery.values()))
        self._tasks = []
        await self.ingest.close()
        await self._flush_seen()

    def add_transport(self, name, transport):
        self.transports[name] = transport

    # ------------------------------------------------------------ from devices

    async def device_frame(self, via, device, frame, identity=None, source=None, decoded=None):
        """Handle one frame a device sent; return the reply frame for it, or None.

        device is who the transport authenticated or addressed (None if it
        cannot tell before an ANNOUNCE); identity and source are what an ANNOUNCE
        registers under and is rate-limited by (see announce). Telemetry the
        store cannot take raises StoreError: the transport must not acknowledge it.
        decoded: the frame as decode_frame gave it, if the transport decoded it already.
        """
        fut = asyncio.get_running_loop().create_future()
        out = self.device_frame_nowait(via, device, frame, partial(settle, fut), decoded,
                                       identity, source)
        if out is PENDING:
            return await fut
        return out

    def device_frame_nowait(self, via, device, frame, answer, decoded=None, identity=None,
                            source=None):
        """device_frame without a coroutine, for a transport answering many frames a loop
        turn: the reply frame (or None) now; or PENDING: for a NOTIFY answer(reply, None)
        is called once its rows are stored, answer(None, StoreError) when they are not;
        for an ANNOUNCE as announce_nowait says."""
        now = self.clock()
        try:
            op, sid, mid, body = decoded or decode_frame(frame, max_size=65536)
        except SpotError as e:
            self._reject("malformed", device, str(e.detail))
            mid = F.message_id(frame)  # answer what can be answered: nothing is stored
            return None if mid is None else F.error(frame[1], mid, e.code, e.detail)
        self.metrics.count(self._received[op])
        if op == F.ANNOUNCE:
            return self.announce_nowait(via, body, now, mid, answer, device, identity, source)
        if device is None or device not in self.known:
            self._reject("unknown_device", device)
            return F.error(sid, mid, NOT_AUTHORISED, "announce first")
        self.routes[device] = via
        self._heard(device, now)
        if op == F.NOTIFY:
            if type(body) is list and len(body) == 2 and self.clocks.notified(device, body[0], now):
                self._kick(device)   # its clock is unset or drifted (even ahead): set it
            try:
                rows = notify_rows(device, body, sid, now)
            except ValueError as e:
                self._reject("malformed", device, str(e))
                return F.error(sid, mid, MALFORMED, str(e))
            if not rows:
                self._telemetry_stored(device, sid, rows, int(now))
                return None
            self._store_telemetry(rows, partial(self._stored, answer, device, sid, mid, rows))
            return PENDING
        if op in F.REQUESTS:
            return F.error(sid, mid, UNSUPPORTED, "the bridge serves no objects")
        return None  # RESULT/ERROR outside a request() exchange: late, already timed out

    def _stored(self, answer, device, sid, mid, rows, error):
        """A NOTIFY's rows are stored (error None) or not: answer(reply, error) says so."""
        if error is None:
            self._telemetry_stored(device, sid, rows, rows[0][3])
            answer(None, None)
        elif isinstance(error, TimeTaken):   # that time is stored with other values
            self._reject("time_taken", device, str(error))
            answer(F.error(sid, mid, OUT_OF_RANGE, str(error)), None)
        else:
            if isinstance(error, S.StoreError):
                self.store_failed("telemetry", error)
            answer(None, error)

    def _telemetry_stored(self, device, sid, rows, t):
        self.metrics.count(self._rows_stored, len(rows))
        if self.hub.listened():
            self.hub.publish({"type": "telemetry", "device": device, "service": sid,
                              "t": t, "values": {str(r[2]): r[4] for r in rows}})

    def _reject(self, reason, device, detail=None):
        self.peers.report(reason, device, detail or "")

    def _store_telemetry(self, rows, done):
        """Store rows (ingest): done(error) once stored (None) or not (StoreError, and then
        nothing is acknowledged). A damaged database takes nothing more until it is
        recovered: raises StoreCorrupt at once."""
        if self.store_corrupt:
            raise S.StoreCorrupt("the store is damaged: telemetry refused (%s)"
                                 % self.store_problem)
        self.ingest.submit(rows, done)

    def store_failed(self, what, error):
        """Note a store failure: /health reports it, a damaged store refuses telemetry."""
        # /health is open to every caller: the kind of failure, not the path or the SQL
        self.store_problem = "%s failed: %s" % (what, "database damaged" if isinstance(
            error, S.StoreCorrupt) else type(error).__name__)
        if isinstance(error, S.StoreCorrupt):
            self.store_corrupt = True
        self._store_log.report(type(error).__name__, what, str(error), level=logging.ERROR)

    async def announce(self, via, body, now, mid=0, expected=None, identity=None, source=None):
        """Register (or refresh) a device from its ANNOUNCE body.

        identity: who the transport authenticated ("dtls:<psk identity>", "oscore:<id>",
        "mqtt", "coap:<ip>"; None: an in-process transport); an id registered under
        one identity can be claimed again only as registration.may_claim allows.
        source: the sender's address, for the per-source limit on new ids. A registration
        the store cannot take is answered ERROR busy and changes nothing."""
        fut = asyncio.get_running_loop().create_future()
        out = self.announce_nowait(via, body, now, mid, partial(settle, fut), expected,
                                   identity, source)
        return await fut if out is PENDING else out

    def announce_nowait(self, via, body, now, mid, answer, expected=None, identity=None,
                        source=None):
        """announce() without a coroutine, for a transport answering ANNOUNCEs from its
        socket's callback: the reply frame now when it is refused before the store
        (malformed, admission) or stored already (a refresh that changes nothing,
        _stored_already); else PENDING, and answer(reply frame, None) comes once
        the registration committed or was refused, answer(None, error) for an error
        that is no refusal (a bug: the transport answers 5.00)."""
        if (type(body) is not dict or type(body.get(A_ID)) is not str or not body[A_ID]
                or type(body.get(A_SERVICES)) is not list):
            self._reject("malformed", expected, "ANNOUNCE body")
            return F.error(0, mid, MALFORMED, "ANNOUNCE needs {0: id, 1: services}")
        device = body[A_ID]
        if expected is not None and expected != device:
            self._reject("identity_mismatch", expected, device)
            return F.error(0, mid, NOT_AUTHORISED, "not this link's device")
        flags = body.get(A_FLAGS, 0) if type(body.get(A_FLAGS, 0)) is int else 0
        consumes = body.get(A_CONSUMES, [])
        consumes = consumes if type(consumes) is list else []
        try:
            check_device_id(device)
            known = device in self.known
            if not known:
                self.admission.check_new(device, identity, source)
            self.admission.check_claim(device, identity)
            # what it writes, for answering an unchanged refresh without the store: never
            # done with instances sharing the store (_stored_already), so not computed
            digest = None if self.instances is not None else registration_digest(
                body[A_SERVICES], consumes, flags, identity, via, source)
            if known:
                if self._stored_already(via, device, digest, now):
                    return self._refreshed(via, body, flags, mid, device, identity, now)
                self.admission.check_refresh(device, source, now)
                try:   # (after the bucket: a flood refused 5.03 costs no check)
                    S.check_registration(device, body[A_SERVICES], consumes, flags, now,
                                         identity)
                except S.InvalidValue:   # what the store would refuse spends no token
                    self.admission.refund_refresh(device, source)
                    raise
        except Refused as e:
            self._reject(e.reason, "%s from %s" % (device, source or via),
                         "%s (identity %s)" % (e.text, identity))
            return F.error(0, mid, e.code, e.text)
        except S.InvalidValue as e:
            self._reject("malformed", device, str(e))
            return F.error(0, mid, MALFORMED, str(e))
        # a device is delivered to after its registration only if the registration's
        # transaction found a command queued, or something kicked it meanwhile
        self._registering[device] = self._registering.get(device, 0) + 1
        try:
            owners = [(self.config.operator, OWNER)] + list(self.plugin_actors.items())
            route, wakes = None, 0
            if self.instances is not None:   # commands to it go out through this instance now
                route = self.instances.route_to_record(device, via, source)
                wakes = self.instances.wakes_heard
            self.registrar.register_nowait(S.Announce(
                device, body[A_SERVICES], consumes, flags, now,
                credential_ref=identity, first_pairings=owners,
                first_audit=self._register_audit(via),
                claim=Claim(identity)), route, partial(
                    self._registered, via, body, flags, mid, identity, source, wakes,
                    (digest, now), answer),
                bounded=source is not None)
        except BaseException:
            if self._registration_ended(device):
                self._kick(device)
            raise
        return PENDING

    def _registration_ended(self, device):
        """One registration of device ended: True when it was the last in flight and
        the device was kicked meanwhile (the kick waited for it)."""
        left = self._registering.pop(device) - 1
        if left:
            self._registering[device] = left
            return False
        if device in self._kicked_registering:
            self._kicked_registering.discard(device)
            return True
        return False

    def _stored_already(self, via, device, digest, now):
        """Is an ANNOUNCE of a known device stored already, so that it can be answered
        without a store write? When it would write what this bridge wrote for the
        device less than refresh_interval seconds ago (registration.Refreshes), from
        the same route, no registration of it is being written (one may change what
        is stored) nor a deletion (the store may have dropped it already), and the
        device is online (a registration stores it online). On PostgreSQL
        (Instances) never: another instance sharing it may have taken the device's
        route or claim, or deleted its row."""
        return (self.instances is None and device not in self._registering
                and device not in self._deleting
                and self.presence.get(device) == "online" and self.routes.get(device) == via
                and self.admission.refreshes.unchanged(device, digest, now))

    def _refreshed(self, via, body, flags, mid, device, identity, now):
        """The RESULT of a registration stored already (_stored_already), as a stored one
        is answered (the clock, the events), without the store: last seen is written
        with the next sweep, and a device whose last command went unanswered is
        delivered to again, as when it is heard from."""
        self.metrics.inc("registrations_unchanged")
        self._heard(device, now)
        reply, deliver = self._stored_registration(via, body, flags, mid, device, identity,
                                                   False)
        if deliver:
            self._kick(device)
        return reply

    def _registered(self, via, body, flags, mid, identity, source, wakes, written, answer,
                    waiting, error):
        """announce()'s end once the registration batch ended: the reply, the device's
        books, its delivery kicked when it has something to deliver. written: (the
        registration's digest, when it came), for Refreshes once it is stored."""
        device = body[A_ID]
        reply, deliver = None, False
        try:
            try:
                if error is not None:
                    raise error
            except S.ClaimRefused as e:
                self.admission.registered(device, e.held)   # another instance registered it
                self._reject("claim_refused", "%s from %s" % (device, source or via),
                             "device registered under another identity (identity %s)"
                             % identity)
                reply = F.error(0, mid, NOT_AUTHORISED,
                                "device registered under another identity")
            except (S.InvalidValue, ValueError) as e:
                self._reject("malformed", device, str(e))
                reply = F.error(0, mid, MALFORMED, str(e))
            except Refused as e:   # this instance is stopping: nothing stored
                self._reject(e.reason, device, e.text)
                reply = F.error(0, mid, e.code, e.text)
            except S.StoreError as e:   # nothing registered, no route recorded: one transaction
                self.store_failed("registration", e)
                reply = F.error(0, mid, BUSY, "not registered, retry later")
            else:
                self.admission.refreshes.written(device, *written)
                reply, deliver = self._stored_registration(via, body, flags, mid, device,
                                                           identity, waiting)
                if self.instances is not None and self.instances.wakes_heard != wakes:
                    # a command queued on another instance meanwhile may have been looked
                    # for before this device's route was stored: look again now that it is
                    self.instances.look_soon()
        except BaseException as e:   # a bug, not a refusal: the transport answers 5.00
            reply, error = None, e
        else:
            error = None
        finally:
            if self._registration_ended(device) or deliver:
                self._kick(device)
        answer(reply, error)

    def _stored_registration(self, via, body, flags, mid, device, identity, waiting):
        """A registration committed: the bridge's books and the RESULT (reply frame,
        whether the device needs a delivery)."""
        self.known.add(device)
        self.admission.registered(device, identity)
        self.routes[device] = via
        answered = getattr(self.transports.get(via), "answers_announce", True)
        result = self.clocks.registered(device, body[A_SERVICES], flags if answered else 0,
                                        self.clock())
        listened = self.hub.listened()   # (the events are built only for a listener)
        if listened:
            self.hub.publish({"type": "device", "device": device,
                              "services": body[A_SERVICES], "sleepy": bool(flags & FLAG_SLEEPY)})
        if self.presence.get(device) != "online":   # the registration stored it online
            self.presence[device] = "online"
            if listened:
                self.hub.publish({"type": "presence", "device": device, "presence": "online"})
        return encode_frame(F.RESULT, 0, mid, result), waiting or device in self.clocks.due

    def _register_audit(self, via):
        """The audit entry of a first registration through `via`: one object per
        transport, so the store encodes its detail once a batch."""
        audit = self._register_audits.get(via)
        if audit is None:
            audit = self._register_audits[via] = ("bridge", "register", {"via": via})
        return audit

    async def presence_changed(self, device, presence):
        """A transport saw a device come or go (MQTT birth / will)."""
        if device in self.known:
            await self._set_presence(device, presence, self.clock())
            if presence == "online":
                self._kick(device)

    def _heard(self, device, now):
        self._seen[device] = now
        if device in self._stalled:  # it answers again: deliver what waits
            self._stalled.discard(device)
            self._kick(device)
        if self.presence.get(device) != "online":  # woke up: deliver what waits
            self.presence[device] = "online"
            asyncio.ensure_future(self._write_presence(device, "online", now))
            self._kick(device)

    async def _set_presence(self, device, presence, now):
        if self.presence.get(device) == presence:
            return
        self.presence[device] = presence
        await self._write_presence(device, presence, now)

    async def _write_presence(self, device, presence, now):
        await self.store.set_presence(device, presence, now)
        self.hub.publish({"type": "presence", "device": device, "presence": presence})

    # ------------------------------------------------------------ commands out

    def _next_mid(self, device):
        mid = (self._mids.get(device, int(self.clock() * 1000)) + 1) & 0xFFFF
        self._mids[device] = mid
        return mid

    def _kick(self, device):
        if self.instances is not None and device not in self.routes:
            self.instances.wake()   # another instance may hold its route
        if device in self._registering:   # its registration kicks it once stored
            self._kicked_registering.add(device)
            return
        task = self._delivery.get(device)
        if task is None or task.done():
            task = asyncio.ensure_future(self._deliver(device))
            self._delivery[device] = task
            task.add_done_callback(lambda t, d=device: self._delivered(d, t))
        else:   # it may have found the queue empty already: it looks again when it ends
            self._kicked.add(device)

    async def deliveries_done(self):
        """Wait until no delivery is running (tests, benchmarks, orderly shutdown)."""
        while self._delivery:
            await asyncio.gather(*list(self._delivery.values()), return_exceptions=True)
            await asyncio.sleep(0)

    def _delivered(self, device, task):
        if self._delivery.get(device) is task:  # keep no finished task per device
            del self._delivery[device]
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery to %s failed: %r", device, task.exception())
        if device in self._kicked:   # a command queued while it ended is not left waiting
            self._kicked.discard(device)
            if not task.cancelled() and device not in self._stalled:   # (stalled: when heard)
                self._kick(device)

    async def _deliver(self, device):
        """Send the device's queued commands one by one while it answers; across all
        devices at most config.commands_in_flight exchanges younger than SLOT_HOLD
        seconds run at once, so a group command to ten thousand devices is paced
        instead of sent in one burst."""
        while self.presence.get(device) == "online":
            await self._in_flight.acquire()
            release = _once(self._in_flight.release)
            # a device that does not answer keeps its slot SLOT_HOLD seconds at most,
            # not its command's whole timeout: the others' commands go on
            timer = asyncio.get_running_loop().call_later(SLOT_HOLD, release)
            try:
                going_on = await self._exchange(device, release)
            finally:
                timer.cancel()
                release()
            if not going_on:
                return

    async def _exchange(self, device, answered=lambda: None):
        """Claim, send and settle the device's next command: False when delivery stops
        (nothing queued, no route, or the device did not answer). answered() is called
        once the device answered or timed out (its in-flight slot is free before the
        outcome is written: the writes of many deliveries go together)."""
        transport = self.transports.get(self.routes.get(device))
        if transport is None:
            return False
        if device in self.clocks.due:
            return await self._set_clock(device, transport)
        mid = self._next_mid(device)
        # claimed and recorded sent in one write; None: nothing queued, or its route was
        # handed to another instance (which sends what the hand-over queued again)
        cmd = await self.writes.claim_and_send(device, mid)
        if cmd is None:
            return False
        frame = F.encode(cmd.op, cmd.service, mid, cmd.body)
        self._command_event(cmd.id, device, "sent")
        try:
            reply = await transport.request(device, frame, cmd.timeout or self.config.command_timeout)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError) as e:
            answered()
            await self._finish(cmd, "timeout", str(e) or "no answer")
            self._subscription_answered(cmd, mid, None, None)
            self._stalled.add(device)
            return False  # the device went quiet: wait until it is heard again
        answered()
        try:
            if not reply:
                raise SpotError(MALFORMED, "no answer frame")
            op, _, rmid, body = decode_frame(reply, max_size=65536)
        except SpotError as e:
            more = await self._finish(cmd, "error", "malformed answer: %s" % (e.detail,))
            self._subscription_answered(cmd, mid, None, None)
            return more is not False
        more = await self._finish(cmd, "done" if op == F.RESULT else "error", body)
        self._subscription_answered(cmd, mid, op, body)
        return more is not False   # nothing more queued: no write to find that out

    async def _set_clock(self, device, transport):
        """Write the bridge's time into the device (before its queued commands)."""
        now = self.clock()
        frame = self.clocks.frame(self._next_mid(device), now)
        try:
            reply = await transport.request(device, frame, self.config.command_timeout)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError):
            self._stalled.add(device)
            return False   # still due: set when it is heard again
        ok = bool(reply) and F.peek(reply) is not None and reply[0] & 0x0F == F.RESULT
        self.clocks.done(device, now)   # refused or not: no retry before the next reason
        self.metrics.inc("clock_sets", status="done" if ok else "refused")
        log.info("set the clock of %s to %d: %s", device, int(now), "done" if ok else "refused")
        return True

    async def _finish(self, cmd, status, result):
        """Complete cmd; whether its device has another command queued (None: unknown)."""
        finished, more = await self.writes.finish(cmd.id, status, result)
        if finished:  # plans follow (store)
            self.metrics.inc("commands", status=status)
            self._command_event(cmd.id, cmd.device, status, result)
        return more

    def _command_event(self, cid, device, status, result=None):
        self.hub.publish({"type": "command", "id": cid, "device": device, "status": status,
                          "result": result})

    async def _authorise(self, actor, device, op, sid, role=False):
        """The actor's role on the device, or Forbidden (role: already read; None: unpaired)."""
        if role is False:
            role = await self.store.role_of(device, actor)
        if role is None or not allowed(role, op, sid):
            self.metrics.inc("frames_rejected", reason="not_authorised")
            await self.store.audit(actor, "refused", device,
                                   {"op": F.OP_NAMES[op], "service": sid, "role": role},
                                   self.clock())
            raise Forbidden("%s may not %s service %d of %s (role: %s)"
                            % (actor, F.OP_NAMES[op], sid, device, role or "not paired"))
        return role

    # ------------------------------------------------------------ subscriptions

    def manages(self, actor, role):
        """Does actor manage the device it has role on (owner, installer, the operator)?"""
        return actor == self.config.operator or role in (OWNER, "installer")

    def _subscription_refusal(self, actor, device, role, op, sid, body):
        """Why the book refuses actor's SUBSCRIBE / UNSUBSCRIBE, or None."""
        if op == F.SUBSCRIBE:
            return self.subscriptions.admit(device, actor, self.manages(actor, role))
        if op == F.UNSUBSCRIBE:
            return self.subscriptions.check_unsubscribe(device, actor, sid, body,
                                                        self.manages(actor, role))
        return None

    def _subscription_answered(self, cmd, mid, op, body):
        """The book follows a SUBSCRIBE's or UNSUBSCRIBE's answer (op None: none came)."""
        if cmd.op == F.SUBSCRIBE:
            self.subscriptions.settled(cmd.id, cmd.service, mid if op == F.RESULT else None)
        elif cmd.op == F.UNSUBSCRIBE and (op == F.RESULT or (   # unknown-object: it is gone
                op == F.ERROR and type(body) is list and body[:1] == [UNKNOWN_OBJECT])):
            self.subscriptions.ended(cmd.device, cmd.service, cmd.body)

    def subscription_ended(self, device, sid, mid):
        """A transport saw the device end a subscription (a final notification)."""
        self.subscriptions.ended(device, sid, mid)

    def subscriptions_of(self, device):
        """[(service, subscription id, actor)] the bridge holds on device."""
        return self.subscriptions.of(device)

    def _check_request(self, service, op, body):
        """BadRequest unless op, service and body make a frame within the limits."""
        if op not in F.REQUESTS:
            raise BadRequest("operation must be one of READ, WRITE, INVOKE, SUBSCRIBE, UNSUBSCRIBE")
        if type(service) is not int or not 0 <= service <= 254:
            raise BadRequest("service must be an integer 0..254")
        try:
            size = len(F.encode(op, service, 0, body))
        except (SpotError, ValueError, TypeError) as e:
            raise BadRequest("body cannot be encoded: %s" % e)
        if size > F.MAX_FRAME:
            raise BadRequest("frame of %d bytes exceeds %d" % (size, F.MAX_FRAME))

    async def _require_known(self, device):
        """LookupError unless the device is registered (the store decides when the
        cache has not seen it yet, e.g. while its registration is finishing)."""
        if device not in self.known:
            try:
                found = type(device) is str and await self.store.get_device(device) is not None
            except S.InvalidValue:
                found = False
            if not found:
                raise LookupError("unknown device %r" % device)
            self.known.add(device)

    async def submit(self, actor, device, service, op, body=None, expires_in=None, timeout=None):
        """Queue a request for a device after access control; returns the Command."""
        self._check_request(service, op, body)
        await self._require_known(device)
        role = await self._authorise(actor, device, op, service)
        refusal = self._subscription_refusal(actor, device, role, op, service, body)
        if refusal is not None:
            await self.store.audit(actor, "refused", device, {"op": F.OP_NAMES[op],
                                                              "service": service,
                                                              "why": refusal}, self.clock())
            raise Forbidden(refusal)
        return (await self._queue(actor, [device], service, op, body, expires_in, timeout,
                                  [self.manages(actor, role)]))[0]

    async def submit_group(self, actor, group, service, op, body=None, expires_in=None,
                           timeout=None):
        """submit() to every device of a group, all queued in one store transaction;
        devices the actor may not command are skipped (each refusal audited) and listed.
        Returns ([Command], [refused device])."""
        self._check_request(service, op, body)
        allowed_devices, refused, managed = [], [], []
        members = await self.store.devices_in_group(group)
        roles = await self.store.roles_of(members, actor)   # one query for the group
        for device in members:
            try:
                role = await self._authorise(actor, device, op, service, roles.get(device))
                if self._subscription_refusal(actor, device, role, op, service, body):
                    raise Forbidden(device)
                allowed_devices.append(device)
                managed.append(self.manages(actor, role))
            except Forbidden:
                refused.append(device)
        commands = await self._queue(actor, allowed_devices, service, op, body, expires_in,
                                     timeout, managed)
        return commands, refused

    async def _queue(self, actor, devices, service, op, body, expires_in, timeout, managed=()):
        """managed: per device, whether actor manages it (for a SUBSCRIBE's book entry)."""
        if not devices:
            return []
        now = self.clock()
        expires = now + (expires_in if expires_in is not None else self.config.command_expiry)
        timeout = timeout or self.config.command_timeout
        ids = await self.store.enqueue_many(devices, service, op, body, actor, now, expires,
                                            timeout)
        if op == F.SUBSCRIBE:   # in the book before delivery can settle it
            for cid, device, manager in zip(ids, devices, managed):
                self.subscriptions.queue(cid, device, actor, manager)
        for cid, device in zip(ids, devices):
            self._command_event(cid, device, "queued")
            self._kick(device)
        # what the store holds now (committed), not read back: a read of every row would
        # hold the store's queue while the first deliveries wait to record their sends
        return S.queued_commands(ids, devices, service, op, body, actor, now, expires, timeout)

    async def push_plan(self, actor, device, plan_id, start, expiry, primacy, entries,
                        expires_in=None):
        """Queue a temporary plan for a device (INVOKE plans.push) after access control."""
        for name, v in (("id", plan_id), ("start", start), ("expiry", expiry), ("primacy", primacy)):
            if type(v) is not int or v < 0:
                raise BadRequest("plan %s must be an unsigned integer" % name)
        if plan_id == 0 or primacy > MAX_PRIMACY or expiry <= start:
            raise BadRequest("plan id must be > 0, primacy <= %d, expiry after start" % MAX_PRIMACY)
        if type(entries) is not dict or not entries:
            raise BadRequest("plan entries must be a non-empty map {service: {object: value}}")
        await self._require_known(device)
        await self._authorise(actor, device, F.INVOKE, PLANS)
        for sid in entries:  # a plan writes its entries' services: the role must allow that
            if type(sid) is not int:
                raise BadRequest("plan entries are keyed by service id")
            await self._authorise(actor, device, F.WRITE, sid)
        now = self.clock()
        plan = [plan_id, start, expiry, primacy, entries]
        exp = now + (expires_in if expires_in is not None else max(0, expiry - now))
        cid = await self.store.enqueue_plan(device, plan, actor, now, exp, self.config.command_timeout)
        self._command_event(cid, device, "queued")
        self._kick(device)
        return await self.store.get_command(cid)

    async def cancel_plan(self, actor, device, plan_id):
        cmd = await self.submit(actor, device, PLANS, F.INVOKE, [CANCEL, plan_id])
        await self.store.set_plan_status(device, plan_id, "cancelled", self.clock())
        return cmd

    async def broadcast(self, actor, service, values, t=None):
        """Send an informational NOTIFY [t, values] to every device consuming service."""
        if actor != self.config.operator and self.plugin_actors.get(actor) not in (
                OWNER, "installer", "aggregator"):
            raise Forbidden("%s may not broadcast" % actor)
        frame = F.encode(F.NOTIFY, service, 0, [int(t if t is not None else self.clock()), values])
        for transport in self.transports.values():
            await transport.broadcast(service, frame)
        await self.store.audit(actor, "broadcast", None, {"service": service}, self.clock())
        return frame

    # ------------------------------------------------------------ pairing

    async def _may_change_pairing(self, actor, device, controller, role, action):
        """Raise (and audit) unless actor may give controller role on device (None:
        unpair): only owners and installers manage pairings, nobody grants a role
        above their own or changes the pairing of someone above them, and the last
        owner stays."""
        mine = await self.store.role_of(device, actor)
        theirs = await self.store.role_of(device, controller)
        refusal = None
        if mine is None:    # as for a device that does not exist: ids are not confirmed
            refusal = LookupError("unknown device %r" % device)
        elif mine not in (OWNER, "installer"):
            refusal = Forbidden("only an owner or installer of %s may %s controllers"
                                % (device, action))
        elif role is not None and ROLE_IDS[role] < ROLE_IDS[mine]:
            refusal = Forbidden("%s may not grant the role %s, above its own (%s)"
                                % (actor, role, mine))
        elif theirs is not None and ROLE_IDS[theirs] < ROLE_IDS[mine]:
            refusal = Forbidden("%s may not %s %s, whose role %s is above its own (%s)"
                                % (actor, action, controller, theirs, mine))
        elif theirs == OWNER and role != OWNER and sum(
                1 for p in await self.store.pairings(device) if p.role == OWNER) == 1:
            refusal = Conflict("%s is the last owner of %s: pair another owner first"
                               % (controller, device))
        if refusal is not None:
            await self.store.audit(actor, "refused", device, {
                "action": action, "controller": controller, "role": role, "own_role": mine,
                "reason": str(refusal)}, self.clock())
            raise refusal

    async def pair(self, actor, device, controller, role, credential=None):
        if role not in ROLE_IDS:
            raise BadRequest("role must be one of %s" % ", ".join(sorted(ROLE_IDS)))
        await self._may_change_pairing(actor, device, controller, role, "pair")
        await self.store.add_pairing(device, controller, role, credential, self.clock())
        await self.store.audit(actor, "pair", device, {"controller": controller, "role": role},
                               self.clock())

    async def unpair(self, actor, device, controller):
        await self._may_change_pairing(actor, device, controller, None, "unpair")
        removed = await self.store.remove_pairing(device, controller)
        await self.store.audit(actor, "unpair", device, {"controller": controller}, self.clock())
        return removed

    # ------------------------------------------------------------ deleting devices

    async def delete_device(self, actor, device):
        """Forget a device (operator, or an owner of it): its store rows, routes and
        queue go, the deletion is audited, and its id is free to register again
        (this is how an operator releases an id bound to a lost identity).
        LookupError for an unknown device, Forbidden for anyone else (audited)."""
        await self._require_known(device)
        now = self.clock()
        if actor != self.config.operator and self.plugin_actors.get(actor) != OWNER \
                and await self.store.role_of(device, actor) != OWNER:
            await self.store.audit(actor, "refused", device, {"op": "delete"}, now)
            raise Forbidden("%s may not delete %s (operator or owner only)" % (actor, device))
        # from its commit until _forget, the books still show the device registered
        self._deleting[device] = self._deleting.get(device, 0) + 1
        try:
            deleted = await self.store.delete_device(device, actor, now,
                                                     {"via": self.routes.get(device)})
        finally:
            left = self._deleting.pop(device) - 1
            if left:
                self._deleting[device] = left
        if not deleted:
            raise LookupError("unknown device %r" % device)
        self._forget(device)
        self.hub.publish({"type": "device_deleted", "device": device})

    def _forget(self, device):
        for cache in (self.routes, self.presence, self._seen, self._mids):
            cache.pop(device, None)
        self.known.discard(device)
        self._stalled.discard(device)
        self.admission.forget(device)
        task = self._delivery.pop(device, None)
        if task is not None:
            task.cancel()
        for transport in self.transports.values():
            forget = getattr(transport, "forget", None)
            if forget is not None:
                forget(device)

    # ------------------------------------------------------------ housekeeping

    async def _flush_seen(self):
        seen, self._seen = self._seen, {}
        for device, t in seen.items():
            await self.store.touch(device, t)

    async def sweep(self):
        """Write last-seen times, mark silent devices offline, expire and time out commands."""
        now = self.clock()
        await self._flush_seen()
        for device, sleepy in await self.store.silent_devices(now - self.config.offline_after):
            await self._set_presence(device, "sleeping" if sleepy else "offline", now)
        for status, ids in (("expired", await self.store.expire(now)),
                            ("timeout", await self.store.time_out(now))):
            for cid in ids:
                self.metrics.inc("commands", status=status)
                self._command_event(cid, None, status)
                self.subscriptions.settled(cid)   # a SUBSCRIBE that never took a slot

    async def prune(self):
        """Delete telemetry older than retention_days, and say what went (never silently)."""
        before = self.clock() - self.config.retention_days * 86400
        deleted = await self.store.prune_telemetry(before)
        if deleted:
            self.metrics.inc("telemetry_pruned", deleted)
            log.warning("retention: deleted %d telemetry rows timed before %s (retention_days = %s)",
                        deleted, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before)),
                        self.config.retention_days)
        return deleted

    async def _sweep_forever(self, every=2.0):
        last_prune = 0
        while True:
            await asyncio.sleep(every)
            try:
                await self.sweep()
                now = self.clock()
                if now - last_prune > 3600:
                    await self.prune()
                    last_prune = now
                if not self.store_corrupt:
                    self.store_problem = None
            except S.StoreError as e:
                self.store_failed("sweep", e)
            except Exception:
                log.exception("sweep failed")
