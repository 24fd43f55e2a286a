"""Simulator building blocks: the Model base class (read / write / invoke
by object name in SI units, time stepping), the site's grid connection, the
weather and solar geometry. Pure CPython, no I/O, no real clock: everything
advances only through step(dt, t_unix), deterministic for a seed.
"""
import math
import random

from ...core import model as M
from ...core.errors import SpotError, READ_ONLY, UNSUPPORTED
from ...profiles import registry

T0 = 1704067200  # 2024-01-01 00:00 UTC, the default start of a simulation


def clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x


def interp(curve, x):
    """Piecewise-linear curve [x0, y0, x1, y1, ...] at x, flat outside."""
    xs = curve[0::2]
    ys = curve[1::2]
    if x <= xs[0]:
        return ys[0]
    for k in range(1, len(xs)):
        if x <= xs[k]:
            x0, x1 = xs[k - 1], xs[k]
            if x1 == x0:
                return ys[k]
            return ys[k - 1] + (ys[k] - ys[k - 1]) * (x - x0) / (x1 - x0)
    return ys[-1]


class OU:
    """An Ornstein-Uhlenbeck process: noise that reverts to `mean`."""

    def __init__(self, rng, mean, sigma, tau, x=None):
        self.rng = rng
        self.mean = mean
        self.sigma = sigma
        self.tau = tau
        self.x = mean if x is None else x

    def step(self, dt):
        a = math.exp(-dt / self.tau)
        self.x = self.mean + (self.x - self.mean) * a + self.sigma * math.sqrt(1 - a * a) * self.rng.gauss(0, 1)
        return self.x


class Model:
    """A simulated SPOT device (or signal source) serving one profile.

    read(name) / write(name, value) / invoke(name, arg) use the profile's
    object names and SI units; write and invoke check the value against the
    profile row (SpotError as a Node would answer). step(dt, t_unix)
    advances the model by dt seconds to time t_unix, in sub-steps of at most
    MAX_DT seconds.
    """

    PROFILE = None
    MAX_DT = 60.0

    def __init__(self, seed=0, t0=T0):
        self.profile = registry.load(self.PROFILE)
        self.rows = {}
        for r in self.profile.OBJECTS:
            self.rows[r[M.NAME]] = r
        self.seed = seed
        self.rng = random.Random(seed)
        self.t = t0
        self.values = {}

    # -------------------------------------------------- object access

    def _row(self, name, need):
        row = self.rows.get(name)
        if row is None:
            raise KeyError("%s has no object %r" % (self.PROFILE, name))
        if not row[M.ACCESS] & need:
            raise SpotError(READ_ONLY if need != M.R else UNSUPPORTED, name)
        return row

    def read(self, name):
        """SI value of a readable object (None if the model has none)."""
        self._row(name, M.R)
        return self.values.get(name)

    def readings(self):
        """{name: SI value} of every readable object."""
        return dict((n, self.values.get(n)) for n, r in self.rows.items() if r[M.ACCESS] & M.R)

    def names(self, need=M.R):
        return [r[M.NAME] for r in self.profile.OBJECTS if r[M.ACCESS] & need]

    def write(self, name, value):
        """Command a writable object (SI value), as a remote WRITE would."""
        row = self._row(name, M.W)
        if value is not None:
            M.check(row, M.to_wire(row, value))
        self.values[name] = value
        self.on_write(name, value)

    def invoke(self, name, arg=None):
        """Carry out an action object, as a remote INVOKE would."""
        row = self._row(name, M.X)
        M.check(row, None if arg is None else M.to_wire(row, arg))
        self.on_invoke(name, arg)

    def on_write(self, name, value):
        pass

    def on_invoke(self, name, arg):
        pass

    # -------------------------------------------------- time

    def step(self, dt, t_unix):
        """Advance by dt seconds, ending at unix time t_unix."""
        if dt <= 0:
            self.t = t_unix
            return
        n = max(1, int(math.ceil(dt / self.MAX_DT - 1e-9)))
        h = dt / n
        start = t_unix - dt
        self.before_step(dt, t_unix)
        for k in range(n):
            self.advance(h, start + (k + 1) * h)
        self.t = t_unix
        self.publish()

    def before_step(self, dt, t_unix):
        """Bring shared inputs (grid, weather) up to t_unix."""

    def advance(self, h, t):
        """Integrate one sub-step of h seconds ending at t."""

    def publish(self):
        """Refresh self.values from the state."""


# ------------------------------------------------------------------ grid

class Grid:
    """The site's connection point: phase voltages and frequency.

    Voltage follows the supply (a slow daily swing and noise) minus the drop
    over the service cable of the site's own phase currents; tests pin the
    voltage or frequency with set_voltage() / set_frequency().
    """

    def __init__(self, seed=0, t0=T0, v_nominal=230.0, f_nominal=50.0, z_line=0.25):
        self.rng = random.Random(seed * 7919 + 1)
        self.t = t0
        self.v_nominal = v_nominal
        self.f_nominal = f_nominal
        self.z_line = z_line
        self.energised = True
        self.site_current = [0.0, 0.0, 0.0]  # signed, + = import, set by the meter
        self._v_noise = [OU(self.rng, 0.0, 1.0, 300.0) for _ in range(3)]
        self._f_noise = OU(self.rng, 0.0, 0.02, 30.0)
        self._v_pin = None
        self._f_pin = None
        self.v = [v_nominal] * 3
        self.f = f_nominal
        self._update()

    def set_voltage(self, v):
        """Pin every phase voltage to v (None: back to the simulated supply)."""
        self._v_pin = v
        self._update()

    def set_frequency(self, f):
        self._f_pin = f
        self._update()

    def advance_to(self, t):
        if t <= self.t:
            return
        dt = t - self.t
        for n in self._v_noise:
            n.step(dt)
        self._f_noise.step(dt)
        self.t = t
        self._update()

    def _update(self):
        if not self.energised:
            self.v = [0.0, 0.0, 0.0]
            self.f = 0.0
            return
        hour = (self.t % 86400) / 3600.0
        swing = 0.012 * math.cos(2 * math.pi * (hour - 3) / 24)  # high at night
        for k in range(3):
            if self._v_pin is not None:
                self.v[k] = self._v_pin
            else:
                self.v[k] = (self.v_nominal * (1 + swing) + self._v_noise[k].x
                             - self.z_line * self.site_current[k])
        self.f = self._f_pin if self._f_pin is not None else self.f_nominal + self._f_noise.x

    def set_energised(self, on):
        self.energised = bool(on)
        self._update()


# ------------------------------------------------------------------ sun and weather

def solar_elevation(t, lat, lon):
    """Sine of the solar elevation at unix time t, latitude / longitude in degrees."""
    n = (t / 86400.0 - 10957.0) % 365.2422 + 1  # day of year (days since 2000-01-01, folded)
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + n) / 365.0)
    b = 2 * math.pi * (n - 81) / 364.0
    eot = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)  # minutes
    utc_hours = (t % 86400) / 3600.0
    solar_time = utc_hours + lon / 15.0 + eot / 60.0
    h = math.radians(15.0 * (solar_time - 12.0))
    phi = math.radians(lat)
    return math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h)


def clear_sky_ghi(t, lat, lon):
    """Clear-sky global horizontal irradiance, W/m2 (Haurwitz model)."""
    cz = solar_elevation(t, lat, lon)
    if cz <= 0.01:
        return 0.0
    return 1098.0 * cz * math.exp(-0.057 / cz)


def cloud_factor(cover):
    """Share of clear-sky irradiance left under a cloud cover 0..1 (Kasten-Czeplak)."""
    return 1.0 - 0.75 * cover ** 3.4


class Weather(Model):
    """Outdoor temperature, clouds, irradiance and wind at a site; serves the
    weather profile (now and forecasts). Clouds are a seeded random process
    around `cloudiness` (0 clear .. 1 overcast)."""

    PROFILE = "weather"

    def __init__(self, seed=0, t0=T0, lat=55.7, lon=12.6, t_mean=None, t_swing=4.0,
                 cloudiness=0.4, utc_offset=3600):
        Model.__init__(self, seed, t0)
        self.lat = lat
        self.lon = lon
        self.t_swing = t_swing
        self.t_mean = t_mean
        self.cloudiness = cloudiness
        self.utc_offset = utc_offset
        r = self.rng
        self._temp_noise = OU(r, 0.0, 1.5, 6 * 3600.0)
        self._cloud = OU(r, cloudiness, 0.35, 1800.0)
        self._wind = OU(r, 5.0, 2.5, 3600.0)
        self.publish()

    def mean_temp(self, t):
        """Expected outdoor temperature at t: season plus day swing."""
        if self.t_mean is not None:
            base = self.t_mean
        else:
            doy = (t / 86400.0 - 10957.0) % 365.2422
            base = 8.5 - 9.0 * math.cos(2 * math.pi * (doy - 20) / 365.2422)  # Danish climate
        hour = ((t + self.utc_offset) % 86400) / 3600.0
        return base + self.t_swing * math.cos(2 * math.pi * (hour - 15) / 24)

    def cover(self):
        return clamp(self._cloud.x, 0.0, 1.0)

    def before_step(self, dt, t_unix):
        self.advance_to(t_unix)

    def advance_to(self, t):
        if t <= self.t:
            return
        dt = t - self.t
        self._temp_noise.step(dt)
        self._cloud.step(dt)
        self._wind.step(dt)
        self.t = t
        self.publish()

    def step(self, dt, t_unix):
        self.advance_to(t_unix)

    @property
    def temp(self):
        """Outdoor temperature now, Cel."""
        return self._temp

    @property
    def ghi(self):
        """Global horizontal irradiance now, W/m2."""
        return self._ghi

    def forecast(self, start, step, n):
        """Expected (temperature, irradiance, cloud %) lists for n slots."""
        temps, ghis, covers = [], [], []
        for k in range(n):
            t = start + k * step + step / 2.0
            temps.append(round(clamp(self.mean_temp(t), -50, 60), 1))
            c = self.cloudiness
            ghis.append(round(clamp(clear_sky_ghi(t, self.lat, self.lon) * cloud_factor(c), 0, 1500)))
            covers.append(round(100 * c))
        return temps, ghis, covers

    def publish(self):
        v = self.values
        self._temp = clamp(self.mean_temp(self.t) + self._temp_noise.x, -50.0, 60.0)
        self._ghi = clamp(clear_sky_ghi(self.t, self.lat, self.lon) * cloud_factor(self.cover()), 0.0, 1500.0)
        v["outdoor_temp"] = self._temp
        v["irradiance"] = self._ghi
        v["wind_speed"] = clamp(abs(self._wind.x), 0.0, 75.0)
        start = int(self.t // 3600 * 3600)
        if v.get("outdoor_temp_forecast") is None or v["outdoor_temp_forecast"][0] != start:
            temps, ghis, covers = self.forecast(start, 3600, 48)
            v["outdoor_temp_forecast"] = [start, 3600, temps]
            v["irradiance_forecast"] = [start, 3600, ghis]
            v["cloud_cover_forecast"] = [start, 3600, covers]


class Device(Model):
    """A device behind the site's meter: owns its grid connection point.

    Keeps e_net_wh, the integral of its active power (load convention), so a
    meter can sum energy exactly; phases says which of L1-L3 it uses.
    """

    MAX_DT = 10.0

    def __init__(self, seed=0, t0=T0, grid=None, weather=None, phases=(0, 1, 2)):
        Model.__init__(self, seed, t0)
        self.grid = grid if grid is not None else Grid(seed, t0)
        self.weather = weather if weather is not None else Weather(seed, t0)
        self.phases = tuple(phases)
        self.e_net_wh = 0.0
        self.p_now = 0.0   # W, load convention
        self.q_now = 0.0   # var, load convention (+ absorbed)

    def before_step(self, dt, t_unix):
        self.grid.advance_to(t_unix)
        self.weather.advance_to(t_unix)

    def account(self, p, q, h):
        self.p_now = p
        self.q_now = q
        self.e_net_wh += p * h / 3600.0

    def phase_power(self):
        """[(p, q)] per phase L1-L3 of this device now."""
        out = [(0.0, 0.0), (0.0, 0.0), (0.0, 0.0)]
        n = len(self.phases)
        for k in self.phases:
            out[k] = (self.p_now / n, self.q_now / n)
        return out

    def phase_voltage(self):
        return sum(self.grid.v[k] for k in self.phases) / len(self.phases)

    def publish_electrical(self):
        v = self.phase_voltage()
        s = math.hypot(self.p_now, self.q_now)
        vals = self.values
        vals["p"] = clamp(self.p_now, -1e7, 1e7)
        vals["q"] = clamp(self.q_now, -1e7, 1e7)
        vals["v"] = clamp(v, 0.0, 1000.0)
        vals["i"] = clamp(s / (v * len(self.phases)), 0.0, 1000.0) if v > 1 else 0.0
        vals["f"] = clamp(self.grid.f, 40.0, 70.0) if self.grid.energised else None
