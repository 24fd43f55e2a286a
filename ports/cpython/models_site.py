"""Site-level simulators: an EV charger with seeded driver sessions, the
household base load, a meter summing a site's devices, an energy manager
aggregating and steering them, price and grid-state signal sources, and
Site, which wires one house together and steps it.
"""
import math
import random

from .models_base import Model, Device, Grid, Weather, clamp, T0
from .models_heat import HeatPumpModel
from .models_der import PVInverterModel, BatteryModel, GeneratorModel


class Vehicle:
    """An electric vehicle's battery as the charger sees it."""

    def __init__(self, capacity_wh=60000.0, soc=30.0, max_current=16.0, v2g=False,
                 reports_soc=True, efficiency=0.92):
        self.capacity = capacity_wh
        self.energy = capacity_wh * soc / 100.0
        self.max_current = max_current
        self.v2g = v2g
        self.reports_soc = reports_soc
        self.efficiency = efficiency

    @property
    def soc(self):
        return clamp(100.0 * self.energy / self.capacity, 0.0, 100.0)


class EVChargerModel(Device):
    """AC charger (IEC 61851 mode 3). Charging power = current limit x phase
    voltage x phases, capped by the vehicle (taper above 80 % SoC), the
    energy request and the power set-point; a limit below min_current
    suspends charging. With auto_sessions, seeded drivers arrive in the
    evening and leave in the morning (most days)."""

    PROFILE = "ev_charger"
    MAX_DT = 5.0

    def __init__(self, seed=0, t0=T0, grid=None, weather=None, max_current=32.0,
                 min_current=6.0, phases=(0, 1, 2), v2g=False, auto_sessions=True,
                 utc_offset=3600):
        Device.__init__(self, seed, t0, grid, weather, phases)
        self.max_current = max_current
        self.min_current = min_current
        self.v2g = v2g
        self.auto = auto_sessions
        self.utc_offset = utc_offset
        self.vehicle = None
        self.session_id = None
        self.session_end = None
        self.session_wh = 0.0
        self.e_in_wh = 0.0
        self.e_out_wh = 0.0
        self.power = 0.0
        self.state = 0
        self.sessions_started = 0
        v = self.values
        v["current_limit"] = max_current
        v["enabled"] = True
        v["energy_requested"] = None
        v["departure_time"] = None
        v["power_setpoint"] = None
        v["min_current"] = min_current
        v["max_current"] = max_current
        v["phases"] = len(self.phases)
        self.publish()

    # ---------------------------------------------- sessions

    def plug_in(self, vehicle, departure=None, energy_requested=None, session_id=None):
        """A vehicle arrives now (self.t)."""
        self.vehicle = vehicle
        self.session_id = session_id
        self.session_end = departure
        self.session_wh = 0.0
        self.sessions_started += 1
        v = self.values
        v["session_start"] = int(self.t)
        v["departure_time"] = None if departure is None else int(departure)
        v["energy_requested"] = energy_requested
        v["power_setpoint"] = None
        self.publish()

    def unplug(self):
        self.vehicle = None
        self.session_end = None
        self.values["departure_time"] = None
        self.values["energy_requested"] = None
        self.power = 0.0
        self.publish()

    def sessions_of_day(self, day):
        """Seeded (arrival, departure, vehicle kwargs, energy request) for a local day, or None."""
        r = random.Random(self.seed * 7654321 + day)
        if r.random() > 0.85:
            return None
        base = day * 86400 - self.utc_offset
        arrive = base + 3600 * clamp(r.gauss(17.5, 1.2), 14.0, 22.0)
        leave = base + 86400 + 3600 * clamp(r.gauss(7.5, 0.5), 6.0, 9.0)
        cap = r.choice((40000.0, 60000.0, 77000.0))
        soc = r.uniform(15.0, 60.0)
        kw = {"capacity_wh": cap, "soc": soc, "max_current": r.choice((16.0, 16.0, 32.0)),
              "v2g": self.v2g and r.random() < 0.5, "reports_soc": r.random() < 0.7}
        request = round((80.0 - soc) / 100.0 * cap) if soc < 80.0 else None
        return arrive, leave, kw, request

    def _auto_sessions(self, t):
        if self.vehicle is not None:
            if self.session_end is not None and t >= self.session_end and self.session_id is not None:
                self.unplug()
            return
        day = int((t + self.utc_offset) // 86400)
        for d in (day - 1, day):
            s = self.sessions_of_day(d)
            if s is None:
                continue
            arrive, leave, kw, request = s
            if arrive <= t < leave and self._last_session != d:
                self._last_session = d
                self.t = t
                self.plug_in(Vehicle(**kw), leave, request, session_id=d)
                return

    _last_session = None

    # ---------------------------------------------- physics

    def advance(self, h, t):
        if self.auto:
            self._auto_sessions(t)
        v = self.values
        veh = self.vehicle
        power = 0.0
        if veh is None:
            state = 0
        else:
            n = len(self.phases)
            vph = self.phase_voltage()
            lim = min(v["current_limit"], self.max_current, veh.max_current)
            req = v["energy_requested"]
            done = veh.soc >= 99.9 or (req is not None and self.session_wh >= req - 0.01)
            if done:
                state = 5
            elif not v["enabled"] or lim < self.min_current or not self.grid.energised:
                state = 3
            else:
                p_max = lim * vph * n
                power = p_max
                sp = v["power_setpoint"]
                if sp is not None:
                    if sp >= 0:
                        power = min(power, sp)
                    elif self.v2g and veh.v2g and veh.soc > 20.0:
                        power = max(sp, -p_max)
                    else:
                        power = 0.0
                if power > 0:
                    if veh.soc > 80.0:
                        power = min(power, p_max * max(0.05, (100.0 - veh.soc) / 20.0))
                    room = (veh.capacity - veh.energy) / veh.efficiency
                    power = min(power, room * 3600.0 / h)
                    if req is not None:
                        power = min(power, (req - self.session_wh) * 3600.0 / h)
                    power = max(0.0, power)
                state = 2 if power != 0 else 3
            if power > 0:
                veh.energy += power * veh.efficiency * h / 3600.0
                self.session_wh += power * h / 3600.0
                self.e_in_wh += power * h / 3600.0
            elif power < 0:
                veh.energy += power / veh.efficiency * h / 3600.0
                self.e_out_wh -= power * h / 3600.0
        self.power = power
        self.state = state
        self.account(power, 0.05 * abs(power), h)

    def p_max(self):
        """Power it would draw now at its limits, W (0 without a vehicle)."""
        if self.vehicle is None:
            return 0.0
        lim = min(self.values["current_limit"], self.max_current, self.vehicle.max_current)
        return lim * self.phase_voltage() * len(self.phases)

    def remaining_wh(self):
        req = self.values["energy_requested"]
        if self.vehicle is None or req is None:
            return 0.0
        return max(0.0, req - self.session_wh)

    def publish(self):
        v = self.values
        self.publish_electrical()
        veh = self.vehicle
        v["session_state"] = self.state if veh is not None else 0
        if veh is None:
            v["plug_state"] = 0
        elif self.power != 0:
            v["plug_state"] = 2
        else:
            v["plug_state"] = 1
        v["session_energy"] = clamp(self.session_wh, 0.0, 1e6)
        v["vehicle_soc"] = round(veh.soc) if veh is not None and veh.reports_soc else None
        v["v2g_capable"] = bool(self.v2g and veh is not None and veh.v2g)
        v["energy_in"] = self.e_in_wh
        v["energy_out"] = self.e_out_wh


class HouseLoad:
    """The household's other appliances: a base load, a daily shape and
    seeded appliance runs, split over the phases. Not a SPOT device."""

    def __init__(self, seed=0, t0=T0, utc_offset=3600, split=(0.45, 0.35, 0.20), grid=None):
        self.seed = seed
        self.grid = grid
        self.rng = random.Random(seed * 31337 + 5)
        self.utc_offset = utc_offset
        self.split = split
        self.t = t0
        self.p_now = 0.0
        self.e_net_wh = 0.0
        self._runs = []
        self._day = None

    def _appliances(self, t):
        day = int((t + self.utc_offset) // 86400)
        if day != self._day:
            r = random.Random(self.seed * 99991 + day)
            base = day * 86400 - self.utc_offset
            runs = []
            for _ in range(r.randint(3, 8)):  # kettle, oven, washing machine, ...
                start = base + 3600 * r.uniform(6.0, 23.0)
                runs.append((start, start + r.choice((180.0, 1800.0, 3600.0)), r.choice((2000.0, 1200.0, 800.0))))
            self._runs = runs
            self._day = day
        return sum(p for a, b, p in self._runs if a <= t < b)

    def power(self, t):
        """Household power at t, W (0 while the supply is off)."""
        if self.grid is not None and not self.grid.energised:
            return 0.0
        hour = ((t + self.utc_offset) % 86400) / 3600.0
        shape = 250.0 * math.exp(-((hour - 7.5) / 1.2) ** 2) + 500.0 * math.exp(-((hour - 19.0) / 2.0) ** 2)
        return 180.0 + shape + self._appliances(t)

    def step(self, dt, t):
        n = max(1, int(math.ceil(dt / 60.0)))
        h = dt / n
        for k in range(n):
            p = self.power(t - dt + (k + 1) * h)
            self.e_net_wh += p * h / 3600.0
        self.p_now = p
        self.t = t

    def phase_power(self):
        return [(self.p_now * s, 0.1 * self.p_now * s) for s in self.split]


class MeterModel(Model):
    """Meter at the site's connection point: sums its sources (devices and
    the house load) per phase. Energy is netted over each step from the
    sources' own energy integrals, so import - export equals the sum of the
    sources' net energy exactly. Writing supply = false opens the breaker."""

    PROFILE = "meter"

    def __init__(self, seed=0, t0=T0, grid=None, sources=(), fuse_a=35.0, utc_offset=3600):
        Model.__init__(self, seed, t0)
        self.grid = grid if grid is not None else Grid(seed, t0)
        self.sources = list(sources)
        self.fuse_a = fuse_a
        self.utc_offset = utc_offset
        self.e_import = 0.0
        self.e_export = 0.0
        self._seen = [s.e_net_wh for s in self.sources]
        self._period = int(t0 // 900)
        self._period_wh = 0.0
        self._over_s = 0.0
        self.values["supply"] = True
        self.values["demand"] = 0.0
        self.publish()

    def add_source(self, src):
        self.sources.append(src)
        self._seen.append(src.e_net_wh)

    def on_write(self, name, value):
        if name == "supply":
            self.grid.set_energised(value)

    def step(self, dt, t_unix):
        self.grid.advance_to(t_unix)
        de = 0.0
        for k, s in enumerate(self.sources):
            de += s.e_net_wh - self._seen[k]
            self._seen[k] = s.e_net_wh
        if de >= 0:
            self.e_import += de
        else:
            self.e_export -= de
        period = int(t_unix // 900)
        if period != self._period:
            self.values["demand"] = clamp(self._period_wh * 4.0, -1e7, 1e7)
            self._period_wh = 0.0
            self._period = period
        self._period_wh += de
        self.t = t_unix
        self.publish()
        worst = max(abs(self.values["i_l%d" % k]) for k in (1, 2, 3))
        self._over_s = self._over_s + dt if worst > self.fuse_a else 0.0
        alarm = self.values.get("alarm")
        if self._over_s >= 10.0 and (alarm is None or not alarm[3]):
            self.values["alarm"] = [int(t_unix), 7, 2, True]
        elif self._over_s == 0.0 and alarm is not None and alarm[3]:
            self.values["alarm"] = [int(t_unix), 7, 2, False]

    def publish(self):
        v = self.values
        g = self.grid
        ps = [0.0, 0.0, 0.0]
        qs = [0.0, 0.0, 0.0]
        for s in self.sources:
            for k, (p, q) in enumerate(s.phase_power()):
                ps[k] += p
                qs[k] += q
        currents = []
        for k in range(3):
            vk = g.v[k]
            s = math.hypot(ps[k], qs[k])
            ik = s / vk if vk > 1.0 else 0.0
            currents.append(ik)
            g.site_current[k] = math.copysign(ik, ps[k])
            v["p_l%d" % (k + 1)] = clamp(ps[k], -1e7, 1e7)
            v["q_l%d" % (k + 1)] = clamp(qs[k], -1e7, 1e7)
            v["v_l%d" % (k + 1)] = clamp(vk, 0.0, 1000.0)
            v["i_l%d" % (k + 1)] = clamp(ik, 0.0, 1000.0)
        p = sum(ps)
        q = sum(qs)
        s = math.hypot(p, q)
        v["p"] = clamp(p, -1e7, 1e7)
        v["q"] = clamp(q, -1e7, 1e7)
        v["v"] = clamp(sum(g.v) / 3.0, 0.0, 1000.0)
        v["i"] = max(currents)
        v["f"] = clamp(g.f, 40.0, 70.0) if g.energised else None
        v["power_factor"] = round(math.copysign(abs(p) / s, q if q != 0 else 1.0), 3) if s > 1.0 else 1.0
        v["energy_import"] = self.e_import
        v["energy_export"] = self.e_export
        hour = ((self.t + self.utc_offset) % 86400) / 3600.0
        day = 6.0 <= hour < 22.0
        v["tariff"] = 1 if day else 2
        v["tariff_name"] = "day" if day else "night"


class PriceModel(Model):
    """Price source (informational): a day-ahead style import price in
    quarter hours with morning and evening peaks and a solar dip, seeded
    noise per slot; export price and CO2 intensity alongside."""

    PROFILE = "price"
    SLOT = 900

    def __init__(self, seed=0, t0=T0, currency="EUR", utc_offset=3600):
        Model.__init__(self, seed, t0)
        self.utc_offset = utc_offset
        self.values["currency"] = currency
        self.publish()

    def price_at(self, t):
        slot = int(t // self.SLOT)
        r = random.Random(self.seed * 1000033 + slot)
        hour = ((slot * self.SLOT + self.utc_offset) % 86400) / 3600.0
        p = (85.0 + 40.0 * math.exp(-((hour - 8.0) / 1.5) ** 2)
             + 70.0 * math.exp(-((hour - 18.5) / 2.0) ** 2)
             - 45.0 * math.exp(-((hour - 13.0) / 2.5) ** 2))
        return round(clamp(p + r.gauss(0, 6.0), -10000.0, 10000.0), 1)

    def co2_at(self, t):
        hour = ((t + self.utc_offset) % 86400) / 3600.0
        return round(clamp(260.0 - 120.0 * math.exp(-((hour - 13.0) / 3.0) ** 2), 0.0, 2000.0))

    def step(self, dt, t_unix):
        self.t = t_unix
        self.publish()

    def publish(self):
        start = int(self.t // self.SLOT * self.SLOT)
        if start == getattr(self, "_published", None):
            return
        self._published = start
        n = 192
        prices = [self.price_at(start + k * self.SLOT) for k in range(n)]
        v = self.values
        v["price_now"] = prices[0]
        v["price_forecast"] = [start, self.SLOT, prices]
        v["export_price_forecast"] = [start, self.SLOT, [round(max(0.0, p - 15.0), 1) for p in prices]]
        v["co2_forecast"] = [start, 3600, [self.co2_at(start + k * 3600) for k in range(48)]]


class GridSignalModel(Model):
    """Grid-state source (informational): normal unless set_state() says
    otherwise, back to normal at state_until."""

    PROFILE = "grid"

    def __init__(self, seed=0, t0=T0):
        Model.__init__(self, seed, t0)
        self.set_state(0)

    def set_state(self, state, until=None, dr_level=None):
        v = self.values
        v["grid_state"] = state
        v["emergency"] = state >= 2
        v["dr_level"] = dr_level if dr_level is not None else min(state, 3)
        v["state_until"] = None if until is None else int(until)

    def step(self, dt, t_unix):
        self.t = t_unix
        until = self.values["state_until"]
        if until is not None and t_unix >= until:
            self.set_state(0)


class EnergyManagerModel(Model):
    """Home energy manager: aggregates its devices and steers them. It keeps
    (unless in manual mode, where it only aggregates) the site import under
    import_limit by lowering, in order, the EV current
    limit, the battery charge limit and the heat pump power limit (and
    raises them again when there is room); it keeps export under
    export_limit through the PV power limit; `reduction` scales the flexible
    loads' caps down; in self-consumption mode batteries balance the site.
    It commands devices through their write() as a SPOT controller would."""

    PROFILE = "energy_manager"

    def __init__(self, seed=0, t0=T0, meter=None, devices=(), price=None, grid_signal=None,
                 import_limit=None, weather=None):
        Model.__init__(self, seed, t0)
        self.meter = meter
        self.devices = list(devices)
        self.price = price
        self.grid_signal = grid_signal
        self.weather = weather
        self._mode_applied = None
        self._allow = {}
        v = self.values
        v["import_limit"] = import_limit if import_limit is not None else (
            3 * 230.0 * meter.fuse_a * 0.9 if meter is not None else 1e7)
        v["export_limit"] = 1e7
        v["reduction"] = 0.0
        v["mode"] = 0
        self.publish()

    def of(self, cls):
        return [d for d in self.devices if isinstance(d, cls)]

    # ---------------------------------------------- control

    def _flexible(self, r):
        """(device, object, max W, W -> value) in shedding order."""
        out = []
        for ev in self.of(EVChargerModel):
            n = len(ev.phases)
            vph = max(ev.phase_voltage(), 1.0)
            hi = ev.max_current * vph * n * (1 - r)
            out.append((ev, "current_limit", hi, lambda w, vph=vph, n=n, ev=ev: (
                0.0 if w / (vph * n) < ev.min_current else min(ev.max_current, w / (vph * n)))))
        for b in self.of(BatteryModel):
            out.append((b, "charge_limit", b.max_charge, lambda w: w))
        for hp in self.of(HeatPumpModel):
            out.append((hp, "power_limit", hp.max_electric * (1 - r), lambda w: w))
        return out

    def _usage(self, dev):
        return max(0.0, dev.p_now)

    def control(self):
        v = self.values
        mode = v["mode"]
        if mode != self._mode_applied:
            if mode in (0, 2):
                for b in self.of(BatteryModel):
                    b.write("mode", 3)
            self._mode_applied = mode
        if mode == 1 and self.price is not None:
            cheap = self.price.values["price_now"] <= sorted(self.price.values["price_forecast"][2][:96])[32]
            for b in self.of(BatteryModel):
                want = 1 if cheap else 3
                if b.values["mode"] != want:
                    b.write("mode", want)
        if mode == 3:
            return  # manual: commands reach the devices unchanged
        r = v["reduction"] / 100.0
        if mode == 2 and self.grid_signal is not None and self.grid_signal.values["grid_state"] >= 1:
            r = max(r, 0.5)
        if self.meter is None:
            return
        excess = self.meter.values["p"] - v["import_limit"]
        for dev, name, hi, to_value in self._flexible(r):
            key = (id(dev), name)
            allow = self._allow.get(key, hi)
            used = self._usage(dev)
            if excess > 0:
                new = max(0.0, min(allow, used) - excess)
                excess -= min(allow, used) - new
            else:
                new = allow - 0.5 * excess  # room: hand some back
            new = clamp(new, 0.0, hi)
            self._allow[key] = new
            value = round(to_value(new), 1)
            if dev.values.get(name) is None or abs(dev.values[name] - value) > 0.05:
                dev.write(name, value)
        export = -self.meter.values["p"] - v["export_limit"]
        for pv in self.of(PVInverterModel):
            cur = pv.values["power_limit"]
            if export > 0:
                new = max(0.0, pv.out - export)
            else:
                new = min(pv.rated, cur - 0.5 * export)
            if abs(new - cur) > 1.0:
                pv.write("power_limit", round(new))

    # ---------------------------------------------- aggregation

    def step(self, dt, t_unix):
        self.t = t_unix
        self.control()
        self.publish()

    def publish(self):
        v = self.values
        devs = self.devices
        v["resources"] = len(devs)
        v["consumption"] = clamp(sum(max(d.p_now, 0.0) for d in devs), 0.0, 1e7)
        v["production"] = clamp(sum(max(-d.p_now, 0.0) for d in devs), 0.0, 1e7)
        defer_p = 0.0
        defer_e = 0.0
        boost = 0.0
        for hp in self.of(HeatPumpModel):
            defer_p += hp.p_comp
            defer_e += hp.deferrable_wh()
        for ev in self.of(EVChargerModel):
            defer_p += max(0.0, ev.power)
            defer_e += ev.remaining_wh()
            if ev.state in (2, 3):
                boost += max(0.0, ev.p_max() - max(0.0, ev.power))
        stored = 0.0
        cap = 0.0
        for b in self.of(BatteryModel):
            defer_p += max(0.0, b.power)
            bv = b.values
            room = max(0.0, bv["soc_max"] / 100.0 * b.capacity() - b.stored)
            defer_e += room
            if room > 0:
                boost += max(0.0, min(bv["charge_limit"], b.max_charge) - max(0.0, b.power))
            stored += max(0.0, b.stored)
            cap += b.capacity()
        v["deferrable_power"] = clamp(defer_p, 0.0, 1e7)
        v["deferrable_energy"] = clamp(defer_e, 0.0, 1e8)
        v["boost_power"] = clamp(boost, 0.0, 1e7)
        v["storage_soc"] = clamp(100.0 * stored / cap, 0.0, 100.0) if cap > 0 else None
        v["storage_energy"] = stored if cap > 0 else None
        if self.meter is not None:
            m = self.meter.values
            for k in ("p", "q", "v", "i", "f"):
                v[k] = m[k]
            v["energy_import"] = m["energy_import"]
            v["energy_export"] = m["energy_export"]
        v["net_forecast"] = self.forecast()

    def forecast(self):
        """Hourly forecast of the site's net power for the next 24 h, W."""
        start = int(self.t // 3600 * 3600)
        if self.weather is None:
            return None
        if self.values.get("net_forecast") is not None and self.values["net_forecast"][0] == start:
            return self.values["net_forecast"]
        temps, ghis, _ = self.weather.forecast(start, 3600, 24)
        house = None
        for s in (self.meter.sources if self.meter is not None else ()):
            if isinstance(s, HouseLoad):
                house = s
        out = []
        for k in range(24):
            t = start + k * 3600 + 1800
            p = house.power(t) if house is not None else 0.0
            for hp in self.of(HeatPumpModel):
                p += max(0.0, hp.ua * (hp.values["room_setpoint"] - temps[k])) / 3.0
            for pv in self.of(PVInverterModel):
                p -= min(pv.rated, pv.peak_dc * ghis[k] / 1000.0 * (1 - pv.dc_losses) * pv.efficiency)
            out.append(round(clamp(p, -1e7, 1e7)))
        return [start, 3600, out]


class Site:
    """One house: grid connection, weather, price and grid signals, the
    household load, a chosen set of devices, the meter and the energy
    manager. step(dt, t) advances everything in a consistent order."""

    def __init__(self, seed=0, t0=T0, heat_pump=True, pv=True, battery=True, ev=True,
                 generator=False, utc_offset=3600, cloudiness=0.4, t_mean=None):
        self.t = t0
        self.grid = Grid(seed, t0)
        self.weather = Weather(seed, t0, cloudiness=cloudiness, utc_offset=utc_offset, t_mean=t_mean)
        self.price = PriceModel(seed, t0, utc_offset=utc_offset)
        self.grid_signal = GridSignalModel(seed, t0)
        self.house = HouseLoad(seed, t0, utc_offset, grid=self.grid)
        env = {"grid": self.grid, "weather": self.weather}
        self.devices = {}
        if pv:
            self.devices["pv_inverter"] = PVInverterModel(seed + 1, t0, **env)
        if generator:
            self.devices["generator"] = GeneratorModel(seed + 2, t0, **env)
        if heat_pump:
            self.devices["heat_pump"] = HeatPumpModel(seed + 3, t0, **env)
        if ev:
            self.devices["ev_charger"] = EVChargerModel(seed + 4, t0, utc_offset=utc_offset, **env)
        if battery:  # last: it balances what the others did
            b = BatteryModel(seed + 5, t0, **env)
            b.site_net = self._net_without_battery
            b.write("mode", 3)
            self.devices["battery"] = b
        sources = list(self.devices.values()) + [self.house]
        self.meter = MeterModel(seed, t0, self.grid, sources, utc_offset=utc_offset)
        self.energy_manager = EnergyManagerModel(seed, t0, self.meter, list(self.devices.values()),
                                                 self.price, self.grid_signal, weather=self.weather)

    def _net_without_battery(self):
        return self.house.p_now + sum(d.p_now for n, d in self.devices.items() if n != "battery")

    def models(self):
        """Every SPOT-serving model of the site, by profile name."""
        out = {"weather": self.weather, "price": self.price, "grid": self.grid_signal,
               "meter": self.meter, "energy_manager": self.energy_manager}
        out.update(self.devices)
        return out

    def step(self, dt, t):
        self.grid.advance_to(t)
        self.weather.advance_to(t)
        self.price.step(dt, t)
        self.grid_signal.step(dt, t)
        self.house.step(dt, t)
        for d in self.devices.values():
            d.step(dt, t)
        self.meter.step(dt, t)
        self.energy_manager.step(dt, t)
        self.t = t

    def run(self, seconds, dt=10.0):
        """Step for `seconds` of simulated time in steps of dt."""
        end = self.t + seconds
        while self.t < end - 1e-9:
            h = min(dt, end - self.t)
            self.step(h, self.t + h)
