"""Simulated devices obey SPOT frames: every control reaches the physics
model (limits, SG-Ready, set-points, plans, fallback), telemetry carries the
simulated time and plausible values, fleets are deterministic, and
`spot sim` runs them from the command line.

Devices are driven only through encoded frames handed to device.receive();
time only moves through device.advance() / fleet.run_until() (no wall
clock), except in the tests of the live runner and the command line."""
import asyncio
import re
import subprocess
import sys
import time

from spot.core import frame as F
from spot.core import model as M
from spot.core import plans as P
from spot.core.errors import UNKNOWN_SERVICE, READ_ONLY, OUT_OF_RANGE, MALFORMED
from spot.core.services import PLANS, ALARMS, DEVICE_INFO, PRICE
from spot.profiles import registry, alarms as AL
from spot.ports.cpython.models import T0
from spot.ports.cpython.simulator import SimDevice, device_profiles, DEFAULT_PLANS
from spot.ports.cpython.fleet import Fleet, parse_profiles

SUMMER = T0 + 171 * 86400   # 2024-06-20 00:00 UTC
HP = registry.load("heat_pump").SERVICE
PV = registry.load("pv_inverter").SERVICE
BAT = registry.load("battery").SERVICE
EV = registry.load("ev_charger").SERVICE
GEN = registry.load("generator").SERVICE
EM = registry.load("energy_manager").SERVICE


def service(sid):
    if sid == PLANS:
        return M.service_of(P)
    return M.service_of(registry.by_service(sid))


class Controller:
    """A SPOT controller talking to one SimDevice through frames only."""

    def __init__(self, dev, peer="ctl"):
        self.dev = dev
        self.peer = peer
        self.mid = 100

    def request(self, op, sid, body=None):
        self.mid += 1
        reply = self.dev.receive(F.encode(op, sid, self.mid, body), self.dev.t, self.peer)
        rop, rsid, rmid, rbody = F.decode(reply)
        assert (rsid, rmid) == (sid, self.mid)
        return rop, rbody

    def ok(self, op, sid, body=None):
        rop, rbody = self.request(op, sid, body)
        assert rop == F.RESULT, rbody
        return rbody

    def read(self, sid, *names):
        """{name: SI value} read with one READ frame."""
        svc = service(sid)
        rows = [svc.by_name[n] for n in names]
        got = self.ok(F.READ, sid, [r[M.ID] for r in rows])
        return dict((r[M.NAME], None if got[r[M.ID]] is None else M.from_wire(r, got[r[M.ID]]))
                    for r in rows)

    def get(self, sid, name):
        return self.read(sid, name)[name]

    def write(self, sid, **values):
        svc = service(sid)
        body = {}
        for name, v in values.items():
            row = svc.by_name[name]
            body[row[M.ID]] = M.to_wire(row, v)
        return self.ok(F.WRITE, sid, body)

    def invoke(self, sid, name, arg=None):
        row = service(sid).by_name[name]
        body = [row[M.ID]] if arg is None else [row[M.ID], M.to_wire(row, arg)]
        return self.ok(F.INVOKE, sid, body)

    def push_plan(self, pid, start, expiry, primacy, sid, **values):
        svc = service(sid)
        entries = {sid: dict((svc.by_name[n][M.ID], M.to_wire(svc.by_name[n], v))
                             for n, v in values.items())}
        return self.ok(F.INVOKE, PLANS, [P.PUSH, [pid, int(start), int(expiry), primacy, entries]])


def notifications(frames, peer=None):
    """[(time, sid, {oid: wire})] of the NOTIFY frames sent to peer."""
    out = []
    for p, fr in frames:
        op, sid, mid, body = F.decode(fr)
        assert op == F.NOTIFY
        if p == peer:
            out.append((body[0], sid, body[1]))
    return out


def run(dev, seconds, step=1.0, each=None):
    """Advance dev by seconds in steps; return every (peer, frame) it sent."""
    frames = []
    end = dev.t + seconds
    while dev.t < end - 1e-9:
        frames.extend(dev.advance(min(end, dev.t + step)))
        if each is not None:
            each()
    return frames


# ---------------------------------------------------------------- controls

def test_pv_power_limit_write_ramps_output_down_to_the_limit():
    dev = SimDevice("pv_inverter", "pv-1", seed=1, t0=SUMMER + 10 * 3600)
    c = Controller(dev)
    run(dev, 60)
    r = c.read(PV, "p", "rated_power", "ramp_rate")
    limit = 0.1 * r["rated_power"]
    ramp = r["ramp_rate"] / 100.0 * r["rated_power"]  # W per second
    assert -r["p"] > limit + 2 * ramp  # producing well above the coming limit
    c.write(PV, power_limit_pct=10.0)
    seen = [-r["p"]]
    for _ in range(15):
        run(dev, 1)
        seen.append(-c.get(PV, "p"))
    assert seen[1] > limit + ramp                        # not at once
    for a, b in zip(seen, seen[1:]):
        assert a - b <= ramp * 1.01 + 5.0                # never faster than the ramp rate
    assert seen[-1] <= limit + 1.0                       # and reaches the limit
    assert c.get(PV, "state") == 4                       # throttled


def running_heat_pump(seed=1):
    dev = SimDevice("heat_pump", "hp-1", seed=seed, t0=T0)
    run(dev, 10)
    return dev, Controller(dev)


def test_heat_pump_sg_ready_1_stops_the_compressor_at_the_next_step():
    dev, c = running_heat_pump()
    r = c.read(HP, "compressor_power", "p")
    assert r["compressor_power"] > 500 and r["p"] > r["compressor_power"]  # consumption is +
    c.write(HP, sg_ready=1)
    run(dev, 10)
    assert c.get(HP, "compressor_power") == 0
    run(dev, 600, 60)  # (within comm_timeout: silence would bring back the default plan)
    assert c.read(HP, "compressor_power", "sg_ready") == {"compressor_power": 0, "sg_ready": 1}


def test_heat_pump_sg_ready_4_forces_the_compressor_on():
    dev, c = running_heat_pump()
    c.write(HP, sg_ready=1)
    run(dev, 600, 10)
    assert c.get(HP, "compressor_power") == 0
    c.write(HP, sg_ready=4)
    run(dev, 10)
    assert c.get(HP, "compressor_power") > 500


def test_battery_setpoint_charges_and_stops_at_soc_max():
    dev = SimDevice("battery", "bat-1", seed=2, t0=T0)
    c = Controller(dev)
    soc0 = c.get(BAT, "soc")
    c.write(BAT, soc_max=soc0 + 5.0, mode=4, power_setpoint=2000.0)
    run(dev, 300, 10)
    r = c.read(BAT, "soc", "p")
    assert r["soc"] > soc0 + 0.5 and r["p"] > 1900
    run(dev, 4 * 3600, 60, lambda: c.get(BAT, "soc"))  # polling keeps the link alive
    r = c.read(BAT, "soc", "p", "state")
    assert soc0 + 4.8 <= r["soc"] <= soc0 + 5.05
    assert abs(r["p"]) < 1.0 and r["state"] == 3  # full: held at 0


def test_battery_setpoint_discharges_and_stops_at_soc_min():
    dev = SimDevice("battery", "bat-1", seed=2, t0=T0)
    c = Controller(dev)
    soc0 = c.get(BAT, "soc")
    c.write(BAT, soc_min=soc0 - 5.0, mode=4, power_setpoint=-2000.0)
    run(dev, 300, 10)
    r = c.read(BAT, "soc", "p")
    assert r["soc"] < soc0 - 0.5 and r["p"] < -1900  # discharge is - (load convention)
    run(dev, 4 * 3600, 60, lambda: c.get(BAT, "soc"))
    r = c.read(BAT, "soc", "p")
    assert soc0 - 5.05 <= r["soc"] <= soc0 - 4.8
    assert abs(r["p"]) < 1.0


def test_ev_current_limit_caps_charging_power():
    dev = SimDevice("ev_charger", "ev-1", seed=1, t0=T0)  # a car is plugged in at T0
    c = Controller(dev)
    run(dev, 10)
    r = c.read(EV, "p", "session_state", "v", "phases")
    assert r["session_state"] == 2 and r["p"] > 15000
    c.write(EV, current_limit=10.0)
    run(dev, 5)
    r = c.read(EV, "p", "v", "phases", "session_state")
    cap = 10.0 * r["v"] * r["phases"]
    assert 0.95 * cap <= r["p"] <= 1.01 * cap and r["session_state"] == 2
    c.write(EV, current_limit=4.0)  # below the 6 A minimum: suspended
    run(dev, 5)
    assert c.read(EV, "p", "session_state") == {"p": 0, "session_state": 3}


def test_generator_follows_p_setpoint_within_capacity():
    dev = SimDevice("generator", "gen-1", seed=1, t0=T0)
    c = Controller(dev)
    cap = c.get(GEN, "capacity")
    want = round(0.6 * cap)
    c.invoke(GEN, "start")
    c.write(GEN, p_setpoint=want)
    run(dev, 12, 1)
    assert c.read(GEN, "p", "status") == {"p": 0, "status": 2}  # synchronising: no output yet
    low = []
    run(dev, 120, 1, lambda: low.append(c.get(GEN, "p")))
    assert min(low) >= -want - 1       # no overshoot
    assert abs(low[-1] + want) <= 1    # generation shows as negative p
    assert c.get(GEN, "status") == 3
    c.write(GEN, p_setpoint=2 * cap)   # more than it has
    run(dev, 300, 5, lambda: c.get(GEN, "p"))
    assert abs(c.get(GEN, "p") + cap) <= 1


# ---------------------------------------------------------------- plans

def test_every_device_starts_with_its_default_plan_in_force():
    for name in device_profiles():
        dev = SimDevice(name, name + "-1", seed=3, t0=T0)
        c = Controller(dev)
        run(dev, 2)
        sid = registry.load(name).SERVICE
        plan = c.ok(F.READ, PLANS, [P.DEFAULT, P.ACTIVE, P.FALLBACK])
        entries = plan[P.DEFAULT]
        assert list(entries) == [sid] and entries[sid], name
        assert plan[P.ACTIVE] == 0 and plan[P.FALLBACK] is False
        assert c.ok(F.READ, sid, list(entries[sid])) == entries[sid], name


def test_temporary_plan_acts_inside_its_window_then_the_default_returns():
    dev, c = running_heat_pump()
    t = int(dev.t)
    c.push_plan(7, t + 600, t + 1800, 10, HP, sg_ready=1)
    before, inside, after = [], [], []

    def look():
        r = c.read(HP, "sg_ready", "compressor_power")
        r["active"] = c.ok(F.READ, PLANS, [P.ACTIVE])[P.ACTIVE]
        # (measurements show a change from the step after it: skip the edges)
        if dev.t < t + 600:
            before.append(r)
        elif t + 600 < dev.t < t + 1800:
            inside.append(r)
        elif dev.t > t + 1800:
            after.append(r)
    run(dev, 3600, 30, look)
    assert all(r["sg_ready"] == 2 and r["active"] == 0 for r in before)
    assert inside and all(r == {"sg_ready": 1, "compressor_power": 0, "active": 7} for r in inside)
    assert after and all(r["sg_ready"] == 2 and r["active"] == 0 for r in after)
    assert any(r["compressor_power"] > 0 for r in after)   # heating again
    assert c.ok(F.READ, PLANS, [P.LIST])[P.LIST] == []      # the expired plan is gone


def test_silence_past_comm_timeout_falls_back_and_next_request_resumes_the_plan():
    dev, c = running_heat_pump()
    c.write(PLANS, comm_timeout=900)
    c.ok(F.SUBSCRIBE, PLANS, {P.FALLBACK: None, P.ACTIVE: None})
    c.ok(F.SUBSCRIBE, HP, {6: None})  # sg_ready
    t = int(dev.t)
    c.push_plan(9, t, t + 7200, 10, HP, sg_ready=4)
    frames = run(dev, 1500, 60)   # the controller says nothing
    state = {}
    history = []
    for when, sid, values in notifications(frames, "ctl"):
        for oid, v in values.items():
            state[(sid, oid)] = v
        history.append((when, dict(state)))
    assert any(s.get((HP, 6)) == 4 for when, s in history if when < t + 900)  # the plan acted
    fell = [(when, s) for when, s in history if s.get((PLANS, P.FALLBACK))]
    assert fell, "no fallback notified"
    when = fell[0][0]
    assert t + 900 <= when <= t + 900 + 60
    s = [s for w, s in history if w == when][-1]  # every notification of that step
    assert s[(HP, 6)] == 2 and s[(PLANS, P.ACTIVE)] == 0     # the default plan governs
    c.ok(F.READ, PLANS, [P.FALLBACK])                         # a valid request
    r = c.ok(F.READ, PLANS, [P.FALLBACK, P.ACTIVE])
    assert r == {P.FALLBACK: False, P.ACTIVE: 9}
    assert c.get(HP, "sg_ready") == 4
    run(dev, 60, 10)
    assert c.get(HP, "compressor_power") > 0


def test_fallback_raises_the_no_communication_alarm():
    dev, c = running_heat_pump()
    c.write(PLANS, comm_timeout=600)
    t = dev.t
    c.push_plan(3, t, t + 7200, 10, HP, sg_ready=3)  # fallback concerns temporary plans
    frames = run(dev, 900, 60)
    alarms = [v for _, sid, v in notifications(frames) if sid == ALARMS and v.get(1)]
    assert alarms and alarms[0][1][1:] == [AL.NO_COMMS, AL.WARNING, True]
    r = c.ok(F.READ, ALARMS, [2, 3])  # contact again
    assert r[3] == 1
    run(dev, 60)
    assert c.ok(F.READ, ALARMS, [1, 2]) == {1: None, 2: 0}


def test_acknowledged_alarm_is_hidden_while_it_lasts():
    dev = SimDevice("battery", "bat-1", seed=2, t0=T0)
    c = Controller(dev)
    c.write(BAT, soc_min=c.get(BAT, "soc") - 2.0, mode=2)  # discharge until empty
    run(dev, 3600, 60, lambda: c.get(BAT, "soc"))
    r = c.ok(F.READ, ALARMS, [1, 2, 3])
    assert r[1][1:] == [AL.LOW_ENERGY, AL.WARNING, True] and r[2] == 1
    c.ok(F.INVOKE, ALARMS, [4, AL.LOW_ENERGY])
    run(dev, 60)
    assert c.ok(F.READ, ALARMS, [1, 2, 3]) == {1: None, 2: 1, 3: r[3]}


def test_a_given_default_plan_replaces_the_profile_default():
    dev = SimDevice("heat_pump", "hp-1", seed=1, default_plan={"sg_ready": 3, "room_setpoint": 22.0})
    c = Controller(dev)
    run(dev, 1)
    assert c.read(HP, "sg_ready", "room_setpoint") == {"sg_ready": 3, "room_setpoint": 22.0}
    assert c.ok(F.READ, PLANS, [P.DEFAULT])[P.DEFAULT] == {HP: {6: 3, 13: 220}}


# ---------------------------------------------------------------- telemetry

def test_pv_telemetry_carries_simulated_time_no_power_at_night_production_at_noon():
    dev = SimDevice("pv_inverter", "pv-1", seed=1, t0=SUMMER)
    sent = []  # (simulated time of the step, notification)

    def steps(seconds, step):
        end = dev.t + seconds
        while dev.t < end:
            t = min(end, dev.t + step)
            sent.extend((t, n) for n in notifications(dev.advance(t)) if n[1] == PV)
    steps(120, 10)
    night = sent[-1]
    steps(11 * 3600 - 120, 600)
    steps(120, 10)
    noon = sent[-1]
    assert all(n[0] == t and type(n[0]) is int for t, n in sent)  # stamped with the step's time
    n_t, _, n_v = night[1]
    d_t, _, d_v = noon[1]
    assert SUMMER < n_t <= SUMMER + 120 and SUMMER + 11 * 3600 < d_t <= SUMMER + 11 * 3600 + 120
    assert 0 <= n_v[1] <= 5 and n_v[8] == 1                  # standby draw only, sleeping
    assert d_v[1] < -1000 and d_v[8] == 3                     # producing: p negative
    assert d_v[9] > 1000                                      # energy_out counted (Wh)


def test_telemetry_values_fit_their_profile_rows():
    fleet = Fleet("all", seed=5, t0=SUMMER + 9 * 3600)
    out = fleet.run_until(fleet.t0 + 600, step=60)
    sids = set()
    for dev, frames in out:
        for when, sid, values in notifications(frames):
            svc = service(sid)
            for oid, v in values.items():
                if v is not None:
                    M.check(svc.by_id[oid], v)
            sids.add(sid)
    assert {HP, PV, BAT, EV, GEN, EM} <= sids
    assert all(d.errors == 0 for d in fleet.devices)


def test_device_info_names_the_simulator_and_the_device():
    dev = SimDevice("heat_pump", "hp-0042", seed=1)
    got = Controller(dev).ok(F.READ, DEVICE_INFO, [1, 3, 5])
    assert got == {1: "SPOT simulator", 3: "hp-0042", 5: HP}


def test_bad_frames_get_errors_and_change_nothing():
    dev, c = running_heat_pump()
    before = c.read(HP, "sg_ready", "flow_setpoint")
    for frame in (b"", b"\x12", b"\x12\x10\x00\x09\xa1\x07", b"\x1f\x10\x00\x01",
                  bytes(2000), F.encode(F.WRITE, HP, 5, {7: 900}),
                  F.encode(F.WRITE, HP, 6, {8: 215}), F.encode(F.READ, 0x42, 7)):
        reply = dev.receive(frame, dev.t, "ctl")
        if reply is not None:
            assert F.decode(reply)[0] == F.ERROR
    assert F.decode(dev.receive(F.encode(F.WRITE, HP, 5, {7: 900}), dev.t, "x"))[3][0] == OUT_OF_RANGE
    assert F.decode(dev.receive(F.encode(F.WRITE, HP, 6, {8: 215}), dev.t, "x"))[3][0] == READ_ONLY
    assert F.decode(dev.receive(F.encode(F.READ, 0x42, 7), dev.t, "x"))[3][0] == UNKNOWN_SERVICE
    bad = dev.receive(b"\x12\x10\x00\x09\xa1\x07", dev.t, "x")
    assert F.decode(bad)[3][0] == MALFORMED
    run(dev, 10)
    assert c.read(HP, "sg_ready", "flow_setpoint") == before
    assert dev.errors == 0


def test_energy_manager_follows_price_broadcasts():
    dev = SimDevice("energy_manager", "em-1", seed=1, t0=T0 + 2 * 3600)
    c = Controller(dev)
    c.write(EM, mode=1)  # follow the price
    run(dev, 60, 10)
    row = service(PRICE).by_name["price_forecast"]

    def broadcast(now, rest):
        start = int(dev.t) // 900 * 900
        value = M.to_wire(row, [start, 900, [now] + [rest] * 95])
        frame = F.encode(F.NOTIFY, PRICE, 0, [int(dev.t), {row[M.ID]: value}])
        assert dev.receive(frame, dev.t, "bridge") is None  # a broadcast has no answer
    broadcast(500.0, 100.0)  # now is dear: storage covers the house
    soc0 = c.get(EM, "storage_soc")
    run(dev, 600, 10)
    soc1 = c.get(EM, "storage_soc")
    assert soc1 < soc0
    broadcast(50.0, 200.0)   # now is the cheapest quarter hour: storage charges
    run(dev, 600, 10)
    assert c.get(EM, "storage_soc") > soc1 + 3.0


# ---------------------------------------------------------------- fleets

def test_fleet_names_devices_by_profile_and_number():
    fleet = Fleet({"heat_pump": 3, "pv_inverter": 2}, seed=1)
    assert sorted(fleet.by_id) == ["hp-0001", "hp-0002", "hp-0003", "pv-0001", "pv-0002"]
    assert parse_profiles("all") == dict((n, 1) for n in device_profiles())
    assert set(DEFAULT_PLANS) == set(device_profiles())


def test_fleet_run_until_is_deterministic_for_a_seed():
    def frames(seed):
        f = Fleet({"heat_pump": 2, "ev_charger": 2, "battery": 1}, seed=seed)
        return [(d.device_id, fr) for d, out in f.run_until(f.t0 + 1800, step=30) for _, fr in out]
    a = frames(4)
    assert a == frames(4)
    assert a != frames(5)
    assert len(set(fr for _, fr in a)) > 20


def test_fleet_hands_notifications_to_the_transport_callback():
    got = []
    fleet = Fleet({"heat_pump": 4}, seed=1, telemetry=300,
                  on_frames=lambda dev, frames: got.append((dev.device_id, len(frames))))
    fleet.run_until(fleet.t0 + 900, step=60)
    ids = [g[0] for g in got]
    assert sorted(set(ids)) == ["hp-0001", "hp-0002", "hp-0003", "hp-0004"]
    assert ids.count("hp-0001") == 3  # at the first step, then every 300 s
    assert fleet.steps == 4 * 15


def test_fleet_run_steps_in_real_time_and_awaits_an_async_callback():
    seen = []

    async def send(dev, frames):
        await asyncio.sleep(0)
        seen.append((dev.device_id, dev.t))
    fleet = Fleet({"pv_inverter": 2}, seed=1, speed=1000.0, telemetry=50)
    wall = time.monotonic()
    asyncio.run(fleet.run(tick=0.1, duration=0.3, on_frames=send))
    wall = time.monotonic() - wall
    assert fleet.ticks == 4 and fleet.steps == 8
    assert {s[0] for s in seen} == {"pv-0001", "pv-0002"}
    assert 300 <= fleet.t - fleet.t0 <= 1000 * wall  # 1000 simulated seconds per second


# ---------------------------------------------------------------- command line

def spot(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "spot.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cli_sim_prints_decoded_telemetry_of_three_heat_pumps():
    r = spot("sim", "heat_pump", "--count", "3", "--speed", "3600", "--duration", "2", "--print",
             "--start", str(T0))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for i in (1, 2, 3):
        assert "hp-000%d SPOT v1 NOTIFY service heat_pump (0x10) mid 0" % i in out
    assert out.count("NOTIFY service heat_pump") >= 6        # two reports or more each
    assert "/flow_temp = " in out and " Cel/" in out and "/compressor_power/" in out
    times = sorted(set(int(x) for x in re.findall(r"\[(\d{10}), \{", out)))
    assert times[0] == T0 and times[1] >= T0 + 3600 and times[2] >= T0 + 7200  # 3600x
    assert times[-1] < T0 + 30 * 3600
    assert "3 devices" in r.stderr


def test_cli_sim_rejects_a_malformed_listen_or_connect_uri():
    for opt, uri in (("--listen", "mqtt://127.0.0.1:5683"), ("--connect", "http://x"),
                     ("--listen", "coap://")):
        r = spot("sim", "heat_pump", opt, uri, "--duration", "0")
        assert r.returncode == 2
        assert "expected" in r.stderr


def test_cli_sim_rejects_an_unknown_profile():
    r = spot("sim", "toaster", "--duration", "0")
    assert r.returncode == 2
    assert "unknown profile 'toaster'" in r.stderr
