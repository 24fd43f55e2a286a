"""Heat pump simulator: an air-to-water heat pump heating a house (1R1C
thermal model with a water loop and emitters) and a hot-water tank against
the outdoor temperature. COP follows a Carnot fraction of the sink (flow or
tank) and source (outdoor) temperatures; SG-Ready 1 blocks the compressor,
3 raises the set-points, 4 forces it on (within safety limits).
"""
import random

from .models_base import Device, clamp, T0

CP_WATER = 4186.0  # J/(kg K)


def carnot_cop(t_sink, t_source, eta=0.45, lift=5.0):
    """COP of a heat pump delivering to t_sink from t_source (Cel)."""
    hot = t_sink + lift + 273.15
    cold = t_source - lift + 273.15
    if hot - cold < 5.0:
        return 7.0
    return clamp(eta * hot / (hot - cold), 1.0, 7.0)


class HeatPumpModel(Device):
    """Air-to-water heat pump, house and tank.

    Parameters: ua (house heat loss, W/K), c_house (J/K), q_nominal (thermal
    W at A7/W35), k_emit (emitter W/K), c_loop (water loop J/K), tank_litres,
    ua_tank (W/K). Energy bookkeeping (J): heat_j (delivered), loss_j (house
    to outside), gain_j (internal and solar gains), draw_j (hot water tapped,
    above 10 Cel mains water), elec_j (electricity): the heat stored in house,
    loop and tank changes by exactly heat + gain - loss - draw (tank losses
    stay in the house).
    """

    PROFILE = "heat_pump"
    MAX_DT = 10.0

    def __init__(self, seed=0, t0=T0, grid=None, weather=None, ua=180.0, c_house=2.5e7,
                 q_nominal=8000.0, k_emit=350.0, c_loop=2.0e5, tank_litres=200.0,
                 ua_tank=2.0, room_temp=20.5, dhw_temp=50.0, gains=300.0, draws=True):
        Device.__init__(self, seed, t0, grid, weather, phases=(0, 1, 2))
        self.ua = ua
        self.c_house = c_house
        self.q_nominal = q_nominal
        self.k_emit = k_emit
        self.c_loop = c_loop
        self.c_tank = tank_litres * CP_WATER
        self.ua_tank = ua_tank
        self.gains = gains
        self.draws_on = draws
        self.t_room = room_temp
        self.t_flow = room_temp + 5.0
        self.t_dhw = dhw_temp
        self.mode = "idle"          # idle | space | dhw
        self.space_demand = False
        self.dhw_demand = False
        self.pause_until = 0
        self.start_not_before = 0
        self.q_hp = 0.0             # thermal W now
        self.p_comp = 0.0           # compressor electrical W now
        self.cop = carnot_cop(35.0, 7.0)
        self.heat_j = 0.0
        self.loss_j = 0.0
        self.gain_j = 0.0
        self.draw_j = 0.0
        self.elec_j = 0.0
        self._draw_day = None
        self._draws = []
        v = self.values
        v["sg_ready"] = 2
        v["flow_setpoint"] = 35.0
        v["room_setpoint"] = 21.0
        v["dhw_setpoint"] = 50.0
        self.max_electric = 6000.0  # the compressor's own electrical limit, W
        v["power_limit"] = self.max_electric
        self.publish()

    # ---------------------------------------------- heat content (for balances)

    def stored_heat_j(self):
        """Heat stored in house, loop and tank above 0 Cel, J."""
        return self.c_house * self.t_room + self.c_loop * self.t_flow + self.c_tank * self.t_dhw

    def q_max(self, t_out):
        """Largest thermal output at this outdoor temperature, W."""
        return self.q_nominal * clamp(1.0 + 0.025 * (t_out - 7.0), 0.5, 1.2)

    # ---------------------------------------------- commands

    def on_invoke(self, name, arg):
        if name == "pause":
            self.pause_until = self.t + arg
        elif name == "start_delay":
            self.start_not_before = self.t + arg

    # ---------------------------------------------- hot-water draws

    def _draw_flow(self, t):
        """Hot water tapped now, kg/s (a seeded pattern per local day)."""
        if not self.draws_on:
            return 0.0
        day = int((t + self.weather.utc_offset) // 86400)
        if day != self._draw_day:
            r = random.Random(self.seed * 1000003 + day)
            base = day * 86400 - self.weather.utc_offset
            ev = [(7.0 + r.uniform(-0.5, 0.5), 60.0 * r.uniform(0.7, 1.3), 360.0),   # shower
                  (19.0 + r.uniform(-1, 1), 40.0 * r.uniform(0.7, 1.3), 300.0)]     # evening
            for _ in range(r.randint(2, 5)):
                ev.append((r.uniform(6.5, 22.5), r.uniform(3, 10), 60.0))            # sink
            self._draws = [(base + h * 3600, base + h * 3600 + dur, litres / dur) for h, litres, dur in ev]
            self._draw_day = day
        flow = 0.0
        for a, b, kgs in self._draws:
            if a <= t < b:
                flow += kgs
        return flow

    # ---------------------------------------------- physics

    def advance(self, h, t):
        v = self.values
        w = self.weather
        t_out = w.temp
        sg = v["sg_ready"]
        room_set = v["room_setpoint"]
        flow_set = v["flow_setpoint"]
        dhw_set = v["dhw_setpoint"]
        if sg == 3:  # increased operation recommended: store heat
            room_set += 1.0
            flow_set = min(flow_set + 5.0, 70.0)
            dhw_set = min(dhw_set + 5.0, 65.0)
        elif sg == 4:  # forced on: store as much as is safe
            room_set += 3.0
            flow_set = min(flow_set + 10.0, 70.0)
            dhw_set = 60.0
        # thermostats with hysteresis
        if self.t_dhw < dhw_set - 5.0:
            self.dhw_demand = True
        elif self.t_dhw >= dhw_set:
            self.dhw_demand = False
        if self.t_room < room_set - 0.3:
            self.space_demand = True
        elif self.t_room > room_set + 0.3:
            self.space_demand = False
        mode = "dhw" if self.dhw_demand else "space" if self.space_demand else "idle"
        if sg == 4 and mode == "idle":
            if self.t_dhw < 62.0:
                mode = "dhw"
            elif self.t_room < 26.0 and self.t_flow < 68.0:
                mode = "space"
        begin = t - h  # decisions hold for the whole sub-step
        blocked = (sg == 1 or begin < self.pause_until or not self.grid.energised)
        if self.mode == "idle" and mode != "idle" and begin < self.start_not_before and sg != 4:
            mode = "idle"  # start deferred
        if blocked:
            mode = "idle"
        self.blocked = blocked
        self.mode = mode
        # compressor output
        q_max = self.q_max(t_out)
        q = 0.0
        if mode == "space":
            self.cop = carnot_cop(self.t_flow, t_out)
            want = (self.k_emit * (self.t_flow - self.t_room)
                    + self.c_loop * (flow_set - self.t_flow) / 300.0)
            q = clamp(want, 0.3 * q_max, q_max) if self.t_flow < 72.0 else 0.0
        elif mode == "dhw":
            self.cop = carnot_cop(self.t_dhw + 5.0, t_out)
            q = q_max if self.t_dhw < 65.0 else 0.0
        limit = v["power_limit"]
        if limit is not None and q / self.cop > limit:
            q = limit * self.cop
        self.q_hp = q
        self.p_comp = q / self.cop
        p = self.p_comp + (40.0 if q > 0 else 0.0) + 8.0 if self.grid.energised else 0.0
        # thermal balance (explicit Euler)
        k_emit = self.k_emit if mode == "space" else 0.1 * self.k_emit  # circulator off
        q_emit = k_emit * (self.t_flow - self.t_room)
        q_loss = self.ua * (self.t_room - t_out)
        q_gain = self.gains + 2.0 * w.ghi  # people, appliances, sun through windows
        q_tank_loss = self.ua_tank * (self.t_dhw - self.t_room)
        draw = self._draw_flow(t) * CP_WATER * max(0.0, self.t_dhw - 10.0)
        q_loop = q if mode == "space" else 0.0
        q_tank = q if mode == "dhw" else 0.0
        self.t_flow += h * (q_loop - q_emit) / self.c_loop
        self.t_room += h * (q_emit + q_gain + q_tank_loss - q_loss) / self.c_house
        self.t_dhw += h * (q_tank - q_tank_loss - draw) / self.c_tank
        self.heat_j += q * h
        self.loss_j += q_loss * h
        self.gain_j += q_gain * h
        self.draw_j += draw * h
        self.elec_j += p * h
        self.account(p, 0.2 * p, h)

    def deferrable_wh(self):
        """Electrical energy it could postpone: heat stored above the comfort floor / COP."""
        room_floor = self.values["room_setpoint"] - 1.0
        dhw_floor = self.values["dhw_setpoint"] - 10.0
        heat = (max(0.0, self.c_house * (self.t_room - room_floor))
                + max(0.0, self.c_tank * (self.t_dhw - dhw_floor)))
        return clamp(heat / 3600.0 / max(self.cop, 1.0), 0.0, 100000.0)

    def publish(self):
        v = self.values
        self.publish_electrical()
        v["flow_temp"] = clamp(self.t_flow, -20.0, 95.0)
        v["dhw_temp"] = clamp(self.t_dhw, 0.0, 95.0)
        v["room_temp"] = clamp(self.t_room, -10.0, 50.0)
        v["outdoor_temp"] = clamp(self.weather.temp, -50.0, 60.0)
        v["compressor_power"] = clamp(self.p_comp, 0.0, 30000.0)
        v["thermal_power"] = clamp(self.q_hp, 0.0, 100000.0)
        v["cop"] = round(self.cop, 2)
        v["deferrable_energy"] = self.deferrable_wh()
        v["energy_in"] = self.elec_j / 3600.0
        v["heat_out"] = self.heat_j / 3600.0
        if not self.grid.energised:
            state = 0
        elif getattr(self, "blocked", False) and (self.space_demand or self.dhw_demand):
            state = 5
        elif self.mode == "space":
            state = 2
        elif self.mode == "dhw":
            state = 3
        else:
            state = 1
        v["state"] = state
