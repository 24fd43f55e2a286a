"""Who may register which device id, under which identity, and how fast.

Every ANNOUNCE the bridge accepts is registered under the identity the
transport authenticated (docs/security-transports.md):

    "dtls:<PSK identity>"   over coaps:// (the DTLS pre-shared key's identity)
    "oscore:<device>"       in a commissioned device's OSCORE context
    "mqtt"                  through the broker (its ACL decides who publishes what)
    "coap:<source IP>"      plain CoAP, when the [registration] plain policy allows it

The store records the identity that registered an id (the device's
credential_ref) and `may_claim` decides whether a later ANNOUNCE may claim the
id again: under the same identity, or an authenticated identity taking over an
id that only a plain-CoAP address held. Everything else is refused with
not-authorised (CoAP 4.01) and changes nothing; the operator releases an id by
deleting the device (DELETE /api/v1/devices/{id}).

Plain-CoAP policy ([registration] plain): "off" (refused), "loopback" (the
default: only from 127.0.0.0/8 and ::1, so a bridge on its default address
127.0.0.1 and `spot demo` / `spot sim --connect coap://127.0.0.1:...` work),
or "open" (any source; each id stays bound to the IP that first registered it).

Limits on new ids (an id the bridge does not know yet): an allow-list
(`allow`: ids or shell patterns, e.g. "hp-*"; empty: any id), for CoAP and
DTLS a token bucket per source (source_burst ids at once, then one per
source_interval seconds) and one in total (total_burst, total_per_second),
and a cap on devices registered over plain CoAP (max_plain). A refusal for a
limit is `busy` (CoAP 5.03), so a device retries later. MQTT registrations
meet the allow-list only (the broker authenticates).

Re-registrations of a known id (Refreshes): one that would write what the
bridge wrote for the id less than refresh_interval seconds ago is answered
without a store write (the service decides when that is safe); the others
from CoAP and DTLS pass a token bucket per id (refresh_burst at once, then
one per refresh_interval seconds), refused `busy` (rate_refresh) over it; one
the store would refuse as malformed gets its token back.
"""
import asyncio
import collections
import fnmatch
import hashlib
import ipaddress
from collections import OrderedDict
from functools import partial

from ..core.errors import BUSY, MALFORMED, NOT_AUTHORISED
from ..core.mqtt_binding import check_level
from .coalesce import Callback, Coalesced
from .ingest import settle

PLAIN_POLICIES = ("off", "loopback", "open")
PLAIN_PREFIX = "coap:"
MAX_SOURCES = 10000     # per-source buckets kept (the least recently used go first)
# re-registrations remembered (Refreshes) at most, the oldest dropped first: an entry
# lives about refresh_interval seconds after its device's last write, so this covers
# 1 000 000 devices registering every 300 s (spec 9.1's lifetime) at the default 30 s
MAX_REFRESHES = 200000
# ANNOUNCEs of one device waiting while its registration is written (two batches at
# once); more from a CoAP or DTLS source are answered busy, so a device (or a spoofer of
# its address) announcing in a loop cannot grow the queue
MAX_WAITING_PER_DEVICE = 4
# registration batches written at once (Registrar), by store dialect: PostgreSQL
# writes each on its own connection while the loop works; SQLite writes one at a time
# on its thread, and two only doubled the fsyncs without a faster burst (benchmarks)
IN_FLIGHT = {"postgresql": 2}
# ... and a second batch only of at least this many ANNOUNCEs: a window of 64 in
# flight written as two batches of 32 cost more CPU in the bridge and the server than
# one of 64, and was slower with the database on the bridge's cores; a window of 512
# gained from two of 256 (docs/benchmarks.md, issue 15's tenth pass)
MIN_SPLIT = 64


class Refused(Exception):
    """An ANNOUNCE the bridge does not accept: SPOT error code, metric reason, text."""

    def __init__(self, code, reason, text):
        super().__init__(text)
        self.code = code
        self.reason = reason
        self.text = text


def check_device_id(device):
    """Refused (malformed) unless device is an id every transport can carry (spec 3):
    1..64 UTF-8 bytes without '/', '+', '#' or NUL, not starting with '$', not 'signal'."""
    try:
        check_level(device)
        device.encode("utf-8")
    except (ValueError, UnicodeEncodeError) as e:
        raise Refused(MALFORMED, "reserved_id", str(e))


def is_plain(identity):
    return identity is None or identity.startswith(PLAIN_PREFIX)


def over_plain_coap(identity):
    return identity is not None and identity.startswith(PLAIN_PREFIX)


def may_claim(held, claimant):
    """May `claimant` register an id that `held` registered? (held None: nobody yet)"""
    if held is None or held == claimant:
        return True
    return is_plain(held) and not is_plain(claimant)


class Claim:
    """The claim= of a store.Announce registering under `identity`: may_claim(held,
    identity) when called, and the same rule as a SQL condition (sql_rule), so a store
    can decide it inside the statement that writes the registration."""

    __slots__ = ("identity",)

    def __init__(self, identity):
        self.identity = identity

    def __call__(self, held):
        return may_claim(held, self.identity)

    @staticmethod
    def sql_rule(held, claimant):
        """may_claim over two SQL text expressions (NULL: no identity)."""
        plain = "(%s IS NULL OR %s LIKE '" + PLAIN_PREFIX + "%%')"
        return "(%s IS NULL OR %s = %s OR (%s AND NOT %s))" % (
            held, held, claimant, plain % (held, held), plain % (claimant, claimant))


def source_ip(host):
    """The IP address of a source host text, IPv4-mapped IPv6 unwrapped; None if not one."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except (ValueError, AttributeError):
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def plain_identity(policy, host):
    """The identity a plain-CoAP ANNOUNCE from host registers under; Refused when the
    policy does not let plain CoAP register from there."""
    ip = source_ip(host)
    if policy == "open" and ip is not None:
        return PLAIN_PREFIX + str(ip)
    if policy == "loopback" and ip is not None and ip.is_loopback:
        return PLAIN_PREFIX + str(ip)
    raise Refused(NOT_AUTHORISED, "plain_refused",
                  "plain CoAP registration is %s here: use coaps:// or OSCORE"
                  % ("off" if policy == "off" else "only for loopback sources"))


class Bucket:
    """A token bucket: `burst` tokens, refilled at `rate` per second."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate, burst, now):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.at = now

    def take(self, now):
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def registration_digest(services, consumes, flags, identity, via, source):
    """What a registration writes and where it came from, as 16 bytes: two ANNOUNCEs of
    one id with equal digests write the same device row (services, consumes, flags,
    identity) from the same route (transport, source address). repr tells 1, 1.0 and
    True apart, as the store does; BLAKE2b makes a changed registration taken for an
    unchanged one as unlikely as a forged hash."""
    text = repr((services, consumes, flags, identity, via, source))
    return hashlib.blake2b(text.encode(), digest_size=16).digest()   # (repr escapes surrogates)


class Written:
    """A known id's last written registration (its digest, when) and its refresh bucket
    as one float: the time its bucket is next full ("theoretical arrival time", GCRA)."""

    __slots__ = ("digest", "at", "full_at")

    def __init__(self, digest, at, full_at):
        self.digest = digest
        self.at = at
        self.full_at = full_at


class Refreshes:
    """Re-registrations of known ids: what each id's last written registration held,
    and a token bucket per id (`burst` writes at once, then one per `interval`
    seconds). An entry whose bucket is full again and whose write is older than
    `interval` says nothing (a full bucket, nothing to answer unchanged) and is
    dropped: the table holds the ids written or refreshed in the last
    (burst + 1) x interval seconds, at most `limit` (the oldest go first, and an id
    dropped is written at its next registration: in doubt, write)."""

    def __init__(self, burst, interval, limit=MAX_REFRESHES):
        self.burst = burst
        self.interval = float(interval)
        self.limit = limit
        self._table = OrderedDict()   # device -> Written, the least recently changed first

    def __len__(self):
        return len(self._table)

    def unchanged(self, device, digest, now):
        """Did device's last written registration have this digest (None: none
        computed, never), less than `interval` seconds before now?"""
        w = self._table.get(device)
        return (w is not None and digest is not None and w.digest == digest and w.at <= now
                and now - w.at < self.interval)

    def take(self, device, now):
        """A token to write a re-registration of device: False when its bucket is empty
        (the bucket is recorded here at once, so ANNOUNCEs waiting for their write
        take tokens too)."""
        w = self._table.get(device)
        if w is None:
            w = self._keep(device, Written(None, float("-inf"), now), now)
        else:
            self._table.move_to_end(device)
        full_at = max(w.full_at, now)
        if full_at - now > (self.burst - 1) * self.interval:
            return False
        w.full_at = full_at + self.interval
        return True

    def give_back(self, device):
        """The token take() just gave for device goes back (its write was refused)."""
        w = self._table.get(device)
        if w is not None:
            w.full_at -= self.interval

    def written(self, device, digest, now):
        """device's registration with this digest, received at now, is stored."""
        w = self._table.get(device)
        if w is None:
            self._keep(device, Written(digest, now, now), now)
        else:   # (a device's registrations commit in the order they came: Registrar)
            w.digest, w.at = digest, now
            self._table.move_to_end(device)

    def forget(self, device):
        self._table.pop(device, None)

    def _keep(self, device, w, now):
        """Add w as device's entry, after dropping the entries that say nothing any more
        (from the oldest) and the oldest beyond the limit."""
        table = self._table
        while table:
            oldest = next(iter(table.values()))
            if len(table) < self.limit and (oldest.full_at > now
                                            or now - oldest.at < self.interval):
                break
            table.popitem(last=False)
        table[device] = w
        return w


class Admission:
    """The registration policy of one bridge (config [registration])."""

    def __init__(self, config, clock):
        self.config = config
        self.clock = clock
        self.allow = list(config.reg_allow)
        self._total = Bucket(config.reg_total_per_second, config.reg_total_burst, clock())
        self._sources = OrderedDict()   # source -> Bucket
        self.plain_ids = set()          # registered ids held by a plain-CoAP address
        self.held = {}                  # registered id -> the identity holding it (a cache)
        self._plain_of = {}             # source host -> its plain-CoAP identity
        self.refreshes = Refreshes(config.reg_refresh_burst, config.reg_refresh_interval)

    def check_claim(self, device, identity):
        """Refused when the cache already says another identity holds the id (the store
        decides again in the registering transaction; this spares it the flood)."""
        held = self.held.get(device)
        if held is not None and not may_claim(held, identity):
            raise Refused(NOT_AUTHORISED, "claim_refused",
                          "device registered under another identity")

    def identity_for_plain(self, host):
        """plain_identity under this bridge's policy, remembered per host (parsing the
        address is most of an ANNOUNCE's admission cost in a reconnect storm)."""
        identity = self._plain_of.get(host)
        if identity is None:
            identity = plain_identity(self.config.reg_plain, host)
            if len(self._plain_of) >= MAX_SOURCES:
                self._plain_of.clear()
            self._plain_of[host] = identity
        return identity

    def check_new(self, device, identity, source):
        """Refused unless a new id may register now (allow-list, rates, plain cap);
        takes the rate tokens when it may. Only CoAP and DTLS registrations (with a
        source address) are rate-limited: MQTT's are authenticated by the broker, and
        a refused birth would not be sent again; an in-process transport (tests,
        benchmarks) has neither source nor identity."""
        if self.allow and not any(fnmatch.fnmatchcase(device, p) for p in self.allow):
            raise Refused(NOT_AUTHORISED, "not_allowed", "device id not in the allow-list")
        if over_plain_coap(identity) and len(self.plain_ids) >= self.config.reg_max_plain:
            raise Refused(BUSY, "plain_cap", "too many devices registered over plain CoAP")
        now = self.clock()
        if source is not None:
            bucket = self._sources.get(source)
            if bucket is None:
                bucket = Bucket(1.0 / self.config.reg_source_interval,
                                self.config.reg_source_burst, now)
                self._sources[source] = bucket
                while len(self._sources) > MAX_SOURCES:
                    self._sources.popitem(last=False)
            else:
                self._sources.move_to_end(source)
            if not bucket.take(now):
                raise Refused(BUSY, "rate_source", "new device ids from this source: retry later")
        if source is not None and not self._total.take(now):
            raise Refused(BUSY, "rate_total", "new device ids: retry later")

    def check_refresh(self, device, source, now):
        """Refused when a known id re-registering from a CoAP or DTLS source (not MQTT,
        as check_new) is over its refresh bucket; takes a token when it is not."""
        if source is not None and not self.refreshes.take(device, now):
            raise Refused(BUSY, "rate_refresh", "this device re-registered too often: "
                          "retry later")

    def refund_refresh(self, device, source):
        """check_refresh's token back: the re-registration it admitted writes nothing."""
        if source is not None:
            self.refreshes.give_back(device)

    def registered(self, device, identity):
        if identity is not None:
            self.held[device] = identity
        if over_plain_coap(identity):
            self.plain_ids.add(device)
        else:
            self.plain_ids.discard(device)

    def forget(self, device):
        self.plain_ids.discard(device)
        self.held.pop(device, None)
        self.refreshes.forget(device)


class Registrar:
    """ANNOUNCEs that arrive together registered in one store transaction
    (store.register_devices through a coalesce.Coalesced): a reconnect storm of
    ten thousand devices costs a few hundred commits, not ten thousand. Each
    caller gets its own outcome or its own error (ClaimRefused, InvalidValue)
    only after the transaction committed, so an ANNOUNCE is answered only once
    its registration is stored. The same transaction says which of the devices
    have commands queued: only those need a delivery started. With several
    instances (`instances`, a cloud_bridge.instances.Instances) it records the
    devices' routes through this instance too.

    On PostgreSQL two batches may be written at once (IN_FLIGHT), what waits split
    evenly between them when each gets at least MIN_SPLIT: with a large window of
    ANNOUNCEs in flight the loop answers one half while the server writes the other;
    a smaller burst is one batch at a time, each statement's rows more. A device that
    announces again while its registration is written waits for it: never in two
    batches at once. in_flight and min_split (optional) replace the defaults."""

    def __init__(self, store, in_flight=None, min_split=MIN_SPLIT):
        if in_flight is None:
            in_flight = IN_FLIGHT.get(getattr(store, "dialect", None), 1)
        self._batch = Coalesced(self._register_many, in_flight=in_flight,
                                min_split=min_split)
        self._store = store
        self._writing = {}   # device id -> done once its registration being written ends
        self.instances = None   # a cloud_bridge.instances.Instances once it started

    async def _register_many(self, items):
        instances = self.instances
        if instances is not None and instances.stopped:   # its routes would be nobody's
            return [Refused(BUSY, "instance_stopped", "this bridge instance is stopping: "
                            "register with another") for _ in items]
        announces = [a for a, _ in items]
        to_record = {a.id: (a.id,) + route for a, route in items if route is not None}
        then = None
        if to_record and instances is not None:   # in the registration's transaction
            then = instances.route_record(to_record)
        outcomes, waiting, recorded = await self._store.register_devices_waiting(announces, then)
        if recorded is not None:
            waiting |= instances.recorded(*recorded)
        return [o if isinstance(o, BaseException) else a.id in waiting
                for o, a in zip(outcomes, announces)]

    async def settled(self):
        """Wait for the registrations handed in so far to be stored (or refused)."""
        await self._batch.close()

    async def register(self, announce, route=None):
        """Register one store.Announce: True when the device has something to deliver
        (a command queued as it was stored, or claims of the instance whose route it
        took over); raises what upsert_device would, or Refused (busy) once `instances`
        stopped. route: (transport, address) to
        record as this instance's, in the same transaction (`instances` only)."""
        fut = asyncio.get_running_loop().create_future()
        self.register_nowait(announce, route, partial(settle, fut))
        return await fut

    def register_nowait(self, announce, route, done, bounded=False):
        """register() without a coroutine: done(outcome, None) or done(None, error) once
        the batch holding it ended (a transport's socket callback, no task per ANNOUNCE).
        bounded: from a CoAP or DTLS source, whose ANNOUNCEs waiting for the device's
        registration being written are bounded (MQTT's are the broker's, authenticated,
        and one refused would only come back after a reconnect)."""
        if self._batch.in_flight == 1:
            self._batch.put((announce, route), Callback(done))
            return
        # two batches at once: a device's second ANNOUNCE waits for its first to be
        # written (two statements registering one new id at once both found it new:
        # its first pairing and audit row twice); in one batch the store orders them
        later = self._writing.get(announce.id)
        if later is not None:
            if bounded and len(later) >= MAX_WAITING_PER_DEVICE:   # (whatever refresh_burst is)
                done(None, Refused(BUSY, "rate_device", "this device's registrations "
                                   "are being written: retry later"))
                return
            later.append((announce, route, done))
            return
        self._writing[announce.id] = collections.deque()
        self._put_writing(announce, route, done)

    def _put_writing(self, announce, route, done):
        self._batch.put((announce, route), Callback(partial(self._written, announce.id, done)))

    def _written(self, device, done, outcome, error):
        """One registration of device ended (two batches at once): the next one of the
        same device that waited for it goes in a batch now."""
        later = self._writing[device]
        if later:
            self._put_writing(*later.popleft())
        else:
            del self._writing[device]
        done(outcome, error)
