"""Simulated SPOT devices: a core Node serving one profile, wired to a physics model.

    dev = SimDevice("heat_pump", "hp-0001", seed=1, t0=T0)
    for peer, frame in dev.advance(t): ...     # NOTIFY frames due at simulated time t
    reply = dev.receive(frame, t, peer)         # a request in, its RESULT / ERROR out

The node runs on whole simulated Unix seconds (its clock offset is 0 and
its time is known), so every NOTIFY carries the simulated time; the model
steps to the exact (fractional) time. advance(t) steps the
model (ports/cpython/models) to t, copies its readings into the node with
node.set (SI units), steps the node and carries the node's events over to
the model: a WRITE (remote or by a plan) becomes model.write(name, value),
an INVOKE model.invoke(name, arg), a consumed price / grid broadcast feeds
the energy manager. receive() applies a request's effects at once.

Besides the profile the node serves device_info (vendor "SPOT simulator"),
alarms (no communication while in fallback, grid fault, low energy,
overload, fault) and, being controllable, plans: every device starts with a
default plan (DEFAULT_PLANS) written through the plans service, so it
visibly returns to it when a temporary plan ends or the controller goes
silent for comm_timeout.

Telemetry: the node holds one standing subscription per served device
service for peer None with message id 0 (spec section 2: unsolicited
telemetry), every `telemetry` simulated seconds, and one on alarm changes.
Frames advance() returns for peer None are that telemetry; any other peer
is whoever subscribed through receive().
"""
import random

from ... import __version__
from ...core import frame as F
from ...core import model as M
from ...core.errors import SpotError
from ...core.node import Node, EV_WRITE, EV_INVOKE, EV_SIGNAL
from ...core.services import PLANS, PRICE, GRID, TIME
from ...profiles import registry, device_info, alarms as AL
from . import models as MD

VENDOR = "SPOT simulator"
FIRST_DEVICE_SID = 0x10
LAST_DEVICE_SID = 0xBF

# profile -> device id prefix
PREFIXES = {
    "heat_pump": "hp", "pv_inverter": "pv", "battery": "bat", "ev_charger": "ev",
    "meter": "meter", "generator": "gen", "energy_manager": "em",
    "weather": "wx", "price": "price", "grid": "grid",
}

# profile -> the default plan, {object name: SI value} of the profile's service;
# a callable gets the model (values that depend on its rating)
DEFAULT_PLANS = {
    "heat_pump": {"sg_ready": 2},                                   # SG-Ready normal
    "pv_inverter": {"power_limit_pct": 100.0, "connect": True},     # full output
    "battery": {"mode": 3},                                         # self-consumption
    "ev_charger": lambda m: {"current_limit": m.max_current, "enabled": True},
    "generator": {"p_setpoint": 0.0},                               # minimum while running
    "meter": {"supply": True},
    "energy_manager": {"mode": 0, "reduction": 0.0},                # self-consumption
}

# profile -> informational services its model can use
CONSUMES = {"energy_manager": (PRICE, GRID)}


def device_profiles():
    """Names of the device profiles (service ids 0x10-0xBF) that have a model."""
    out = []
    for name in registry.names():
        sid = registry.load(name).SERVICE
        if FIRST_DEVICE_SID <= sid <= LAST_DEVICE_SID and name in MD.MODELS:
            out.append(name)
    return out


def simulated_profiles():
    """Every profile SimDevice can serve (device profiles and signal sources)."""
    return [n for n in registry.names() if n in MD.MODELS]


# ------------------------------------------------------------------ models

def build_model(profile, seed, t0, weather=None):
    """(model, step(dt, t)) for a profile; weather may be shared by a fleet.

    Meter and energy manager sit in a whole simulated house (Site) so they
    see real flows; the battery balances a small house with PV.
    """
    env = {"grid": MD.Grid(seed, t0),
           "weather": weather if weather is not None else MD.Weather(seed, t0)}
    if profile in ("meter", "energy_manager"):
        site = MD.Site(seed, t0)
        return (site.meter if profile == "meter" else site.energy_manager), site.step
    if profile == "battery":
        house = MD.HouseLoad(seed, t0, grid=env["grid"])
        pv = MD.PVInverterModel(seed + 1, t0, **env)
        bat = MD.BatteryModel(seed, t0, **dict(env, **sizes(profile, seed)))
        bat.site_net = lambda: house.p_now + pv.p_now

        def step(dt, t):
            house.step(dt, t)
            pv.step(dt, t)
            bat.step(dt, t)
        return bat, step
    cls = MD.MODELS[profile]
    if issubclass(cls, MD.Device):
        m = cls(seed, t0, **dict(env, **sizes(profile, seed)))
    else:
        m = cls(seed, t0)
    return m, m.step


def sizes(profile, seed):
    """Seeded ratings and starting state of one device, so a fleet is not all alike."""
    r = random.Random(seed * 48271 + 11)
    if profile == "heat_pump":
        q = r.choice((5000.0, 8000.0, 11000.0))
        return {"q_nominal": q, "ua": 180.0 * q / 8000.0 * r.uniform(0.85, 1.15),
                "room_temp": r.uniform(20.0, 21.0), "dhw_temp": r.uniform(45.0, 55.0)}
    if profile == "pv_inverter":
        rated = r.choice((3000.0, 4000.0, 5000.0, 6000.0, 8000.0, 10000.0))
        return {"rated": rated, "peak_dc": rated * r.uniform(1.0, 1.25)}
    if profile == "battery":
        cap = r.choice((5000.0, 10000.0, 13500.0))
        p = min(5000.0, cap / 2.0)
        return {"capacity": cap, "max_charge": p, "max_discharge": p, "soc": r.uniform(20.0, 80.0)}
    if profile == "ev_charger":
        return {"max_current": r.choice((16.0, 32.0))}
    if profile == "generator":
        rated = r.choice((5000.0, 10000.0, 20000.0))
        return {"rated": rated, "min_power": 0.3 * rated}
    return {}


def nominal_power(m):
    """Rated power of a model, W (device_info nominal_power)."""
    for attr in ("rated", "max_electric"):
        if hasattr(m, attr):
            return getattr(m, attr)
    if isinstance(m, MD.BatteryModel):
        return max(m.max_charge, m.max_discharge)
    if isinstance(m, MD.EVChargerModel):
        return m.max_current * 230.0 * len(m.phases)
    if isinstance(m, MD.MeterModel):
        return m.fuse_a * 230.0 * 3
    if isinstance(m, MD.EnergyManagerModel):
        return min(m.values["import_limit"], 1e7)
    return 0.0


# ------------------------------------------------------------------ alarms

def _conditions(dev):
    """[(code, severity)] of the alarm conditions present now."""
    v = dev.model.values
    out = []
    if dev.node.fallback:
        out.append((AL.NO_COMMS, AL.WARNING))
    volts = v.get("v")
    if volts is not None and not 0.85 * 230.0 <= volts <= 1.1 * 230.0:  # EN 50160 band, or no supply
        out.append((AL.GRID_FAULT, AL.MAJOR))
    name = dev.profile_name
    if name == "battery" and v.get("state") == 4:
        out.append((AL.LOW_ENERGY, AL.WARNING))
    elif name == "generator":
        if v.get("status") == 5:
            out.append((AL.HW_FAULT, AL.MAJOR))
        fuel = v.get("fuel_level")
        if fuel is not None and fuel < 10.0:
            out.append((AL.LOW_ENERGY, AL.WARNING))
    elif name == "pv_inverter" and (v.get("temperature") or 0.0) > 75.0:
        out.append((AL.OVER_TEMP, AL.WARNING))
    elif name == "heat_pump" and (v.get("flow_temp") or 0.0) > 75.0:
        out.append((AL.OVER_TEMP, AL.MAJOR))
    elif name == "meter":
        a = v.get("alarm")
        if a is not None and a[3]:
            out.append((a[1], a[2]))
    return out


class Alarms:
    """Alarm bookkeeping of one device from its present conditions.

    `active` shows the most severe active alarm not yet acknowledged (None
    if there is none); acknowledging a code (0: all) hides it until it
    clears and comes back.
    """

    def __init__(self):
        self.active = {}   # code -> [time, code, severity, True]
        self.acked = set()
        self.events = 0
        self.last = None

    def update(self, conditions, t):
        now = dict(conditions)
        changed = False
        for code in list(self.active):
            if code not in now:
                rec = self.active.pop(code)
                self.acked.discard(code)
                self.last = [int(t), code, rec[2], False]
                changed = True
        for code, sev in conditions:
            if code not in self.active:
                rec = [int(t), code, sev, True]
                self.active[code] = rec
                self.events += 1
                self.last = rec
                changed = True
        return changed

    def acknowledge(self, code):
        for c in self.active:
            if code == 0 or c == code:
                self.acked.add(c)

    def shown(self):
        best = None
        for code, rec in self.active.items():
            if code not in self.acked and (best is None or (rec[2], -rec[1]) > (best[2], -best[1])):
                best = rec
        return best


# ------------------------------------------------------------------ device

class _SignalSource:
    """Stands in for a price / grid model: values taken from broadcasts."""

    def __init__(self, base):
        self.values = dict(base.values)


def _not_the_clock(peer, op, sid):
    """A node authorisation allowing everything but setting the time."""
    return not (sid == TIME and op == F.WRITE)


class SimDevice:
    """One simulated device: a Node serving profile_name, driven by its model.

    seed makes the model (ratings, weather, sessions) reproducible; t0 is the
    simulated start (default models.T0); default_plan is {object name: SI
    value} of the profile's service (None: DEFAULT_PLANS, {}: none);
    telemetry is the period of the standing telemetry in simulated seconds
    (None: none); weather may be one models.Weather shared by many devices.
    keep_clock: the node's clock is the simulated world's (a start in the past, a
    speed other than 1): it refuses a WRITE of the time (not-authorised) instead of
    letting a bridge set it to the wall clock (spec 3.1).
    """

    def __init__(self, profile_name, device_id, seed=0, t0=None, comm_timeout=900,
                 default_plan=None, telemetry=60, weather=None, keep_clock=False):
        if profile_name not in MD.MODELS:
            raise KeyError("no simulator model for profile %r" % profile_name)
        self.profile_name = profile_name
        self.device_id = device_id
        self.t = MD.T0 if t0 is None else t0
        self.profile = registry.load(profile_name)
        self.sid = self.profile.SERVICE
        self.model, self._step_model = build_model(profile_name, seed, self.t, weather)
        # the plant has run a second before the device reports: its first readings are
        # its state, not the zeros of a model never stepped (a false spike in every plot)
        self._step_model(1, self.t)
        is_device = FIRST_DEVICE_SID <= self.sid <= LAST_DEVICE_SID
        served = [device_info, self.profile] + ([AL] if is_device else [])
        self.node = Node(served, device_id, consumes=CONSUMES.get(profile_name, ()),
                         comm_timeout=comm_timeout, max_subs=10)
        self.node.clock_offset = 0  # node time = simulated Unix seconds
        self.node.time_known = True
        if keep_clock:
            self.node.authorise = _not_the_clock
        self.alarms = Alarms() if is_device else None
        self.errors = 0            # model / node refusals (should stay 0)
        self._pending = []
        self._svc = self.node.services[self.sid]
        # readable objects copied model -> node; writable ones only when the model changed them
        self._copy = []
        for r in self.profile.OBJECTS:
            if r[M.ACCESS] & M.R:
                self._copy.append((r[M.ID], r[M.NAME]))
        self._seen = {}
        self._device_info()
        self._sync()
        self._set_default_plan(default_plan)
        if telemetry:
            self._subscribe_telemetry(telemetry)
        if self.alarms is not None:
            self._publish_alarms()

    # -------------------------------------------------- set-up

    def _device_info(self):
        n = self.node
        sid = device_info.SERVICE
        n.set(sid, 1, VENDOR)
        n.set(sid, 2, ("sim-" + self.profile_name)[:32])
        n.set(sid, 3, self.device_id[:32])
        n.set(sid, 4, __version__[:16])
        n.set(sid, 5, self.sid)
        n.set(sid, 6, nominal_power(self.model))
        phases = getattr(self.model, "phases", None)
        if phases is not None:
            n.set(sid, 8, len(phases))
        n.set(sid, 9, 230.0)

    def default_plan_entries(self, names=None):
        """Wire-form plan entries {sid: {oid: value}} from {object name: SI value}."""
        if names is None:
            names = DEFAULT_PLANS.get(self.profile_name)
            if callable(names):
                names = names(self.model)
        objs = {}
        for name, value in (names or {}).items():
            row = self._svc.by_name[name]
            objs[row[M.ID]] = M.to_wire(row, value)
        return {self.sid: objs} if objs else None

    def _set_default_plan(self, names):
        entries = self.default_plan_entries(names)
        if entries is None or PLANS not in self.node.services:
            return
        self.node.set_default_plan(entries)
        self._pending.extend(self.node.step(int(self.t)))
        self._apply_events()

    def _subscribe_telemetry(self, period):
        attrs = {}
        for r in self._svc.rows:
            if r[M.ACCESS] & M.R and r[M.TYPE] not in (M.SCHEDULE, M.CURVE, M.MAP, M.PLAN):
                attrs[r[M.ID]] = {0: period, 1: period}
        # back-dated so the first advance() already reports
        self.node.report(self.sid, attrs, int(self.t) - period)
        if self.alarms is not None:
            self.node.report(AL.SERVICE, {1: None, 2: None, 3: None}, int(self.t))

    # -------------------------------------------------- the seam

    def announce(self, mid=0):
        """The ANNOUNCE frame a transport sends on (re)connecting."""
        return self.node.announce(mid)

    def advance(self, t_unix):
        """Step to simulated time t_unix; return [(peer, NOTIFY frame)] due."""
        dt = t_unix - self.t
        if dt > 0:
            self._step_model(dt, t_unix)
            self.t = t_unix
        t = int(self.t)  # node time: whole simulated Unix seconds
        self._sync()
        if self._signal_sources:
            self._refresh_signals(t)
        out = self._pending
        self._pending = []
        out.extend(self.node.step(t))
        if self.node.events:
            self._apply_events()
        if self.alarms is not None and self.alarms.update(_conditions(self), t):
            self._publish_alarms()
        return out

    def receive(self, frame, t_unix, peer=None):
        """Hand one frame to the node; return its reply frame (or None).

        Writes, invocations and plans act on the model at once; notifications
        this causes come out of the next advance().
        """
        t = int(t_unix if t_unix > self.t else self.t)
        reply = self.node.receive(frame, t, peer)
        if self.node.events:
            self._apply_events()
        self._pending.extend(self.node.step(t))
        if self.node.events:
            self._apply_events()
        return reply

    def next_deadline(self):
        """Simulated seconds until the node wants step() again (None: only input)."""
        return self.node.next_deadline(int(self.t))

    # -------------------------------------------------- model <-> node

    def _sync(self):
        """Copy readings (and writable values the model changed) into the node."""
        vals = self.model.values
        seen = self._seen
        node = self.node
        sid = self.sid
        for oid, name in self._copy:
            v = vals.get(name)
            if name in seen and seen[name] == v:
                continue
            seen[name] = v
            try:
                node.set(sid, oid, v)
            except SpotError:
                self.errors += 1

    def _apply_events(self):
        svc = self._svc
        for kind, sid, oid, arg in self.node.pop_events():
            try:
                if kind == EV_WRITE and sid == self.sid:
                    name = svc.by_id[oid][M.NAME]
                    v = self.node.get(sid, oid)
                    self.model.write(name, v)
                    self._seen[name] = self.model.values.get(name)
                elif kind == EV_INVOKE and sid == self.sid:
                    row = svc.by_id[oid]
                    self.model.invoke(row[M.NAME], None if arg is None else M.from_wire(row, arg))
                    self._sync()
                elif kind == EV_INVOKE and sid == AL.SERVICE and oid == 4 and self.alarms is not None:
                    self.alarms.acknowledge(arg)
                    self._publish_alarms()
                elif kind == EV_SIGNAL:
                    self._signal(sid, arg)
            except SpotError:
                self.errors += 1

    # -------------------------------------------------- informational signals

    _signal_sources = None

    def _signal(self, sid, body):
        """Take a price / grid broadcast ([time, {oid: value}]) for the model."""
        if type(body) is not list or len(body) != 2 or type(body[1]) is not dict:
            return
        em = self.model
        attr = {PRICE: "price", GRID: "grid_signal"}.get(sid)
        if attr is None or getattr(em, attr, None) is None:
            return
        svc = M.service_of(registry.by_service(sid))
        src = self._signal_sources.get(sid) if self._signal_sources else None
        if src is None:
            src = _SignalSource(getattr(em, attr))
            setattr(em, attr, src)
            self._signal_sources = dict(self._signal_sources or {})
            self._signal_sources[sid] = src
        given = {}
        for oid, wire in body[1].items():
            row = svc.by_id.get(oid) if type(oid) is int else None
            if row is None or wire is None:
                continue
            try:
                M.check(row, wire)
            except SpotError:
                continue
            given[row[M.NAME]] = M.from_wire(row, wire)
        if sid == PRICE:
            fc = given.get("price_forecast")
            if fc is not None and len(fc[2]) < 33:
                given.pop("price_forecast")  # too short to rank (needs 33 slots)
            if fc is not None and "price_now" not in given:
                src.derive_now = True
        src.values.update(given)
        self._refresh_signals(self.t)

    def _refresh_signals(self, t):
        src = self._signal_sources.get(PRICE)
        if src is not None and getattr(src, "derive_now", False):
            fc = src.values.get("price_forecast")
            if fc is not None:
                now = M.schedule_at(fc, t)
                if now is not None:
                    src.values["price_now"] = now

    # -------------------------------------------------- alarms

    def _publish_alarms(self):
        a = self.alarms
        n = self.node
        sid = AL.SERVICE
        shown = a.shown()
        n.set(sid, 1, None if shown is None else list(shown))
        n.set(sid, 2, len(a.active))
        n.set(sid, 3, a.events)
        if a.last is not None:
            n.set(sid, 5, list(a.last))
