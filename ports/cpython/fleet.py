"""A fleet of simulated SPOT devices on one simulated clock, and its seam
to the transports.

    fleet = Fleet({"heat_pump": 100, "pv_inverter": 50}, seed=1, speed=60)
    fleet.run_until(fleet.t0 + 3600)              # tests: no wall clock at all
    await fleet.run(tick=1.0, on_frames=send)     # live: t = t0 + speed * wall time

Seam for a transport (CoAP, MQTT, serial), the only two things it needs:

1. outbound: on_frames(device, [(peer, frame)]) is called after each step
   of a device that has NOTIFY frames due (it may be a coroutine function;
   run() awaits it). peer None means unsolicited telemetry or an alarm
   change (message id 0: publish on the device's telemetry topic / to its
   configured controller); any other peer is the value the transport passed
   to receive() when that peer subscribed (an address, a client id).
2. inbound: reply = device.receive(frame, fleet.now(), peer) for a frame
   addressed to device (fleet.by_id[device_id]); send the reply (if not
   None) back to peer. Writes and plans act on the model at once.

Plus device.announce() for the birth / registration message and
fleet.devices to enumerate them. Everything runs in the event loop's
thread: receive() and the stepping never overlap.
"""
import asyncio
import inspect
import time

from .models import T0, Weather
from .simulator import SimDevice, PREFIXES, device_profiles, simulated_profiles


def parse_profiles(spec, count=1):
    """{profile: count} from a name ("all": every device profile), a list or a dict."""
    if isinstance(spec, dict):
        out = dict(spec)
    else:
        names = [spec] if isinstance(spec, str) else list(spec)
        out = {}
        for n in names:
            for m in (device_profiles() if n == "all" else [n]):
                out[m] = out.get(m, 0) + count
    known = simulated_profiles()
    for n in out:
        if n not in known:
            raise KeyError("unknown profile %r (known: %s, all)" % (n, ", ".join(known)))
    return out


class Fleet:
    """Many SimDevices (device ids like hp-0001) advanced together."""

    def __init__(self, profiles, seed=0, t0=None, speed=1.0, telemetry=60, comm_timeout=900,
                 on_frames=None, shared_weather=True, keep_clock=False):
        self.t0 = T0 if t0 is None else t0
        self.t = self.t0
        self.speed = speed
        self.on_frames = on_frames
        self.devices = []
        self.by_id = {}
        self.steps = 0       # device-steps done
        self.frames = 0      # NOTIFY frames handed out
        self.busy = 0.0      # wall seconds spent stepping (run() only)
        self.ticks = 0
        self.late = 0        # ticks that started after their slot (run() only)
        self._wall0 = None
        weather = Weather(seed, self.t0) if shared_weather else None
        counts = parse_profiles(profiles)
        for k, name in enumerate(sorted(counts)):
            prefix = PREFIXES.get(name, name)
            for i in range(counts[name]):
                dev_id = "%s-%04d" % (prefix, i + 1)
                dev_seed = seed * 1000003 + (k + 1) * 100003 + i
                d = SimDevice(name, dev_id, seed=dev_seed, t0=self.t0, comm_timeout=comm_timeout,
                              telemetry=telemetry, weather=weather, keep_clock=keep_clock)
                self.devices.append(d)
                self.by_id[dev_id] = d

    # -------------------------------------------------- clock

    def now(self, wall=None):
        """Simulated Unix time: t0 + speed * (wall - start of run()); t0 before it."""
        if self._wall0 is None:
            return self.t
        if wall is None:
            wall = time.monotonic()
        return self.t0 + self.speed * (wall - self._wall0)

    # -------------------------------------------------- stepping

    def advance(self, t_unix):
        """Advance every device to t_unix; return [(device, [(peer, frame)])] and
        hand each to on_frames (awaitables it returns are collected, not awaited)."""
        out = []
        self._awaiting = []
        for d in self.devices:
            frames = d.advance(t_unix)
            if frames:
                out.append((d, frames))
                self.frames += len(frames)
                if self.on_frames is not None:
                    r = self.on_frames(d, frames)
                    if inspect.isawaitable(r):
                        self._awaiting.append(r)
        self.steps += len(self.devices)
        self.t = t_unix
        return out

    def run_until(self, t_unix, step=1.0):
        """Advance in simulated steps of `step` seconds up to t_unix (no wall clock);
        return [(device, [(peer, frame)])]. on_frames must be synchronous here."""
        out = []
        while self.t < t_unix:
            out.extend(self.advance(min(t_unix, self.t + step)))
            for a in self._awaiting:  # a synchronous caller cannot await
                if inspect.iscoroutine(a):
                    a.close()
        return out

    async def run(self, tick=1.0, duration=None, on_frames=None):
        """Advance all devices every `tick` wall seconds for `duration` wall
        seconds (None: until cancelled), simulated time running `speed` times
        faster than the wall clock."""
        if on_frames is not None:
            self.on_frames = on_frames
        start_t = self.t
        self._wall0 = time.monotonic() - (start_t - self.t0) / self.speed
        begin = time.monotonic()
        k = 0
        while duration is None or k * tick <= duration + 1e-9:
            slot = begin + k * tick
            wait = slot - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif k:
                self.late += 1
            t = self.now()
            a = time.monotonic()
            self.advance(max(t, self.t))
            self.busy += time.monotonic() - a
            for aw in self._awaiting:
                await aw
            self.ticks += 1
            k += 1
            await asyncio.sleep(0)
