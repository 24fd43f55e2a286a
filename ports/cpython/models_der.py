"""Simulators of distributed energy resources: a PV inverter (clear-sky
sun with seeded clouds, IEEE 1547 style power limit with ramp rate, fixed
power factor, volt-var, frequency-watt, cease to energise), a battery
(round-trip efficiency, SoC and power limits, modes) and a dispatchable
generator (start / stop sequence, set-points within capacity and ramp).
"""
import math

from .models_base import Device, clamp, interp, T0


def reactive_limit(s_max, p):
    """Largest |Q| an inverter rated s_max VA can give at active power p."""
    return math.sqrt(max(0.0, s_max * s_max - p * p))


class PVInverterModel(Device):
    """PV array and inverter. Output follows the irradiance at once; power
    limits (% and W) are reached through the ramp rate, starting from the
    present output; reconnection ramps up from zero. The frequency-watt cap
    acts at once (it protects the grid)."""

    PROFILE = "pv_inverter"
    MAX_DT = 5.0

    def __init__(self, seed=0, t0=T0, grid=None, weather=None, rated=5000.0,
                 peak_dc=5500.0, efficiency=0.965, dc_losses=0.12, phases=(0, 1, 2)):
        Device.__init__(self, seed, t0, grid, weather, phases)
        self.rated = rated
        self.dc_losses = dc_losses  # soiling, mismatch, wiring, orientation
        self.peak_dc = peak_dc
        self.efficiency = efficiency
        self.cap = rated        # the ramped power limit in force, W
        self.out = 0.0          # AC output now, W
        self.avail = 0.0
        self.dc = 0.0
        self.g_poa = 0.0
        self.t_sink = self.weather.temp
        self.e_out_wh = 0.0
        self.e_in_wh = 0.0
        v = self.values
        v["power_limit_pct"] = 100.0
        v["power_limit"] = rated
        v["connect"] = True
        v["power_factor"] = 1.0
        v["q_mode"] = 0
        v["q_setpoint"] = 0.0
        v["volt_var"] = [0.92, 0.44, 0.98, 0.0, 1.02, 0.0, 1.08, -0.44]  # IEEE 1547 cat. B
        v["freq_watt"] = [1.0, 1.0, 1.004, 1.0, 1.054, 0.0]  # 50.2 Hz, 40 %/Hz
        v["freq_watt_enabled"] = True
        v["ramp_rate"] = 10.0
        v["rated_power"] = rated
        self.publish()

    def on_write(self, name, value):
        if name == "connect" and not value:
            self.cap = 0.0

    def on_invoke(self, name, arg):
        if name == "cease_to_energise":
            self.values["connect"] = False
            self.cap = 0.0
            self.out = 0.0
            self.p_now = 0.0
            self.q_now = 0.0
            self.publish()

    def limit_w(self):
        """The commanded active power limit, W (the lower of % and W)."""
        v = self.values
        lim = self.rated * v["power_limit_pct"] / 100.0
        if v["power_limit"] is not None:
            lim = min(lim, v["power_limit"])
        return lim

    def fw_cap(self):
        v = self.values
        if not v["freq_watt_enabled"] or not self.grid.energised:
            return self.rated
        return max(0.0, interp(v["freq_watt"], self.grid.f / self.grid.f_nominal) * self.rated)

    def advance(self, h, t):
        w = self.weather
        v = self.values
        self.g_poa = w.ghi  # array irradiance taken as the horizontal one
        t_cell = w.temp + 0.03 * self.g_poa
        self.dc = max(0.0, self.peak_dc * self.g_poa / 1000.0 * (1 - 0.004 * (t_cell - 25.0))
                      * (1 - self.dc_losses))
        self.avail = clamp(self.dc * self.efficiency - 5.0, 0.0, self.rated)
        on = v["connect"] and self.grid.energised
        if not on:
            self.cap = 0.0
            self.out = 0.0
        else:
            ramp = v["ramp_rate"] / 100.0 * self.rated * h
            target = self.limit_w()
            if target < self.cap:
                self.cap = max(target, min(self.cap, self.out) - ramp)
            else:
                self.cap = min(target, self.cap + ramp)
            self.out = min(self.avail, self.cap, self.fw_cap())
        q_inj = 0.0
        if on:
            mode = v["q_mode"]
            if mode == 1:
                pf = v["power_factor"]
                mag = clamp(abs(pf), 0.1, 1.0)
                q_inj = math.copysign(self.out * math.tan(math.acos(mag)), pf)
            elif mode == 2:
                vpu = self.phase_voltage() / self.grid.v_nominal
                q_inj = interp(v["volt_var"], vpu) * self.rated
            elif mode == 3:
                q_inj = v["q_setpoint"]
            qmax = reactive_limit(1.1 * self.rated, self.out)
            q_inj = clamp(q_inj, -qmax, qmax)
        standby = 2.0 if self.out <= 0.0 and self.grid.energised else 0.0
        self.e_out_wh += self.out * h / 3600.0
        self.e_in_wh += standby * h / 3600.0
        self.t_sink += (w.temp + 0.01 * self.out * (1 - self.efficiency) * 20 - self.t_sink) * min(1.0, h / 600.0)
        self.account(standby - self.out, -q_inj, h)

    def publish(self):
        v = self.values
        self.publish_electrical()
        v["energy_out"] = self.e_out_wh
        v["energy_in"] = self.e_in_wh
        v["available_power"] = self.avail
        v["dc_power"] = clamp(self.dc, 0.0, 1e7)
        v["irradiance"] = self.g_poa
        v["temperature"] = clamp(self.t_sink, -40.0, 120.0)
        v["dc_voltage"] = (clamp(420.0 * (1 + 0.05 * math.log(self.g_poa / 1000.0)), 0.0, 1500.0)
                           if self.g_poa > 5.0 else 0.0)
        if not (v["connect"] and self.grid.energised):
            state = 0
        elif self.avail < 20.0:
            state = 1
        elif self.out < self.avail - 0.01 * self.rated:
            state = 4
        else:
            state = 3
        v["state"] = state


class BatteryModel(Device):
    """Stationary battery with round-trip efficiency split evenly between
    charge and discharge. Conservation: stored energy changes by exactly
    energy_in * eta_c - energy_out / eta_d. `site_net` (a callable giving the
    site's other net power, W) drives the balance mode."""

    PROFILE = "battery"
    MAX_DT = 5.0

    def __init__(self, seed=0, t0=T0, grid=None, weather=None, capacity=10000.0,
                 max_charge=5000.0, max_discharge=5000.0, round_trip=0.90, soc=50.0,
                 phases=(1,), site_net=None):
        Device.__init__(self, seed, t0, grid, weather, phases)
        self.nominal = capacity
        self.max_charge = max_charge
        self.max_discharge = max_discharge
        self.eta = math.sqrt(round_trip)
        self.stored = capacity * soc / 100.0   # Wh
        self.site_net = site_net
        self.power = 0.0
        self.limited = False
        self.e_in_wh = 0.0
        self.e_out_wh = 0.0
        self.temp = 20.0
        v = self.values
        v["power_setpoint"] = 0.0
        v["mode"] = 0
        v["charge_limit"] = max_charge
        v["discharge_limit"] = max_discharge
        v["soc_min"] = 5.0
        v["soc_max"] = 100.0
        v["q_setpoint"] = 0.0
        v["max_charge_power"] = max_charge
        v["max_discharge_power"] = max_discharge
        v["nominal_capacity"] = capacity
        self.publish()

    def soh(self):
        """State of health, %: 80 % after 6000 full cycles."""
        return clamp(100.0 - 20.0 * self.full_cycles() / 6000.0, 0.0, 100.0)

    def full_cycles(self):
        return (self.e_in_wh + self.e_out_wh) / (2.0 * self.nominal)

    def capacity(self):
        return self.nominal * self.soh() / 100.0

    def soc(self):
        return clamp(100.0 * self.stored / self.capacity(), 0.0, 100.0)

    def wanted(self):
        v = self.values
        mode = v["mode"]
        if mode == 1:
            return v["charge_limit"]
        if mode == 2:
            return -v["discharge_limit"]
        if mode == 3:
            return -self.site_net() if self.site_net is not None else 0.0
        if mode == 4:
            return v["power_setpoint"]
        return 0.0

    def advance(self, h, t):
        v = self.values
        want = self.wanted()
        hi = min(v["charge_limit"], self.max_charge)
        lo = -min(v["discharge_limit"], self.max_discharge)
        p = clamp(want, lo, hi)
        cap = self.capacity()
        if not self.grid.energised:
            p = 0.0
        if p > 0:
            room = v["soc_max"] / 100.0 * cap - self.stored
            p = clamp(room * 3600.0 / h / self.eta, 0.0, p)
        elif p < 0:
            avail = self.stored - v["soc_min"] / 100.0 * cap
            p = -clamp(avail * 3600.0 / h * self.eta, 0.0, -p)
        self.limited = abs(p - want) > 1.0
        if p > 0:
            self.stored += p * self.eta * h / 3600.0
            self.e_in_wh += p * h / 3600.0
        else:
            self.stored += p / self.eta * h / 3600.0
            self.e_out_wh -= p * h / 3600.0
        self.power = p
        loss = abs(p) * (1 - self.eta)
        ambient = 15.0 + 0.3 * (self.weather.temp - 15.0)
        self.temp += h * (loss - 20.0 * (self.temp - ambient)) / 1.0e5
        q_inj = 0.0
        if self.grid.energised:
            qmax = reactive_limit(1.1 * max(self.max_charge, self.max_discharge), p)
            q_inj = clamp(v["q_setpoint"], -qmax, qmax)
        self.account(p, -q_inj, h)

    def publish(self):
        v = self.values
        self.publish_electrical()
        soc = self.soc()
        v["soc"] = soc
        v["capacity"] = self.capacity()
        v["temperature"] = clamp(self.temp, -40.0, 100.0)
        v["soh"] = self.soh()
        v["energy_in"] = self.e_in_wh
        v["energy_out"] = self.e_out_wh
        v["cycles"] = int(self.full_cycles())
        v["stored_energy"] = max(0.0, self.stored)
        if self.power > 0.5:
            state = 1
        elif self.power < -0.5:
            state = 2
        elif soc >= v["soc_max"] - 0.1:
            state = 3
        elif soc <= v["soc_min"] + 0.1 and self.wanted() < 0:
            state = 4
        else:
            state = 0
        v["state"] = state


class GeneratorModel(Device):
    """Dispatchable generator (diesel genset or CHP). start -> starting
    (crank) -> synchronising -> running; stop -> stopping (ramps down and
    cools down) -> stopped. While running the output ramps toward the
    set-point, held between min_power and the capacity (derated when hot)."""

    PROFILE = "generator"
    MAX_DT = 1.0
    CRANK_S = 10.0
    SYNC_S = 5.0
    COOL_S = 30.0

    def __init__(self, seed=0, t0=T0, grid=None, weather=None, rated=10000.0,
                 min_power=3000.0, fuel_wh=400000.0, efficiency=0.35, phases=(0, 1, 2)):
        Device.__init__(self, seed, t0, grid, weather, phases)
        self.rated = rated
        self.min_power = min_power
        self.fuel_full = fuel_wh
        self.fuel = fuel_wh
        self.efficiency = efficiency
        self.status = 0
        self.timer = 0.0
        self.out = 0.0
        self.run_s = 0.0
        self.e_out_wh = 0.0
        self.coolant = self.weather.temp
        v = self.values
        v["p_setpoint"] = 0.0
        v["q_setpoint"] = 0.0
        v["ramp_rate"] = 2.0
        v["min_power"] = min_power
        v["rated_power"] = rated
        v["capacity_over_max"] = 0.1 * rated
        self.publish()

    def capacity(self):
        t = self.weather.temp
        return self.rated * clamp(1.0 - 0.005 * max(0.0, t - 25.0), 0.0, 1.0)

    def on_invoke(self, name, arg):
        if name == "start" and self.status in (0, 4) and self.fuel > 0:
            self.status = 1
            self.timer = 0.0
        elif name == "stop" and self.status in (1, 2, 3):
            self.status = 4
            self.timer = 0.0
        self.publish()

    def advance(self, h, t):
        v = self.values
        ramp = v["ramp_rate"] / 100.0 * self.rated * h
        self.timer += h
        if self.status in (1, 2, 3) and (self.fuel <= 0 or not self.grid.energised):
            self.status = 5 if self.fuel <= 0 else 4
            self.timer = 0.0
            if self.status == 5:
                self.out = 0.0
        if self.status == 1 and self.timer >= self.CRANK_S:
            self.status, self.timer = 2, 0.0
        elif self.status == 2 and self.timer >= self.SYNC_S:
            self.status, self.timer = 3, 0.0
        target = 0.0
        if self.status == 3:
            target = clamp(v["p_setpoint"], self.min_power, self.capacity())
            self.run_s += h
        if self.out < target:
            self.out = min(target, self.out + ramp)
        else:
            self.out = max(target, self.out - ramp)
        if self.status == 4 and self.out <= 0.0:
            if self.timer >= self.COOL_S:
                self.status = 0
        running = self.status in (1, 2, 3) or (self.status == 4 and self.out > 0)
        burn = (self.out / self.efficiency + (0.05 * self.rated if running else 0.0)) * h / 3600.0
        self.fuel = max(0.0, self.fuel - burn)
        self.e_out_wh += self.out * h / 3600.0
        hot = 85.0 if running or self.status == 4 else self.weather.temp
        self.coolant += (hot - self.coolant) * min(1.0, h / 300.0)
        q_inj = 0.0
        if self.status == 3:
            qmax = reactive_limit(1.25 * self.rated, self.out)
            q_inj = clamp(v["q_setpoint"], -qmax, qmax)
        aux = 20.0 if self.status == 0 and self.grid.energised else 0.0  # controller, block heater
        self.account(aux - self.out, -q_inj, h)

    def publish(self):
        v = self.values
        self.publish_electrical()
        cap = self.capacity()
        v["capacity"] = cap
        v["status"] = self.status
        v["energy_out"] = self.e_out_wh
        v["reserve"] = max(0.0, cap - self.out) if self.status == 3 else 0.0
        v["fuel_level"] = clamp(100.0 * self.fuel / self.fuel_full, 0.0, 100.0) if self.fuel_full else None
        v["temperature"] = clamp(self.coolant, -40.0, 200.0)
        v["run_time"] = int(self.run_s)
