"""What a demand-response plugin reports of its devices, from the bridge's store.

Shared by the OpenADR 2.0b and OpenADR 3 plugins: each device's main profile,
and the sums a VEN reports (active power, net energy, devices online and
reporting). Values come from the store's latest table (what devices reported
and the bridge stored), never from the models; a device whose last power is
older than `max_age` seconds is left out of the sum rather than counted stale.
"""
from ...core.services import (HEAT_PUMP, PV_INVERTER, BATTERY, EV_CHARGER, METER, GENERATOR,
                               ENERGY_MANAGER)
from ..plugin_api import member_filter
from .dr_translate import DeviceView, capable, needs_readings, readings_of, service

P = 1   # active power, W (scale 0), the same object id in every device profile

# profile -> ((energy counter name, sign), ...): net imported energy, Wh
ENERGY = {
    HEAT_PUMP: (("energy_in", 1),),
    PV_INVERTER: (("energy_in", 1), ("energy_out", -1)),
    BATTERY: (("energy_in", 1), ("energy_out", -1)),
    EV_CHARGER: (("energy_in", 1), ("energy_out", -1)),
    METER: (("energy_import", 1), ("energy_export", -1)),
    GENERATOR: (("energy_out", -1),),
    ENERGY_MANAGER: (("energy_import", 1), ("energy_export", -1)),
}


def taking_part(devices, opts):
    """The devices a demand-response plugin acts for: its `groups` and `devices` options
    (a device in either takes part); both empty: every device."""
    keep = member_filter(opts)
    return devices if keep is None else [d for d in devices if keep(d)]


async def device_views(ev, ids, by_id, latest):
    """The DeviceView of every targeted device the event can act on: its main profile,
    what it consumes, and (only where the event's rules need them) its latest readings
    from `latest(device_id)`, the store's latest table."""
    views = []
    for i in ids:
        sid = main_service(by_id[i])
        if sid is None or not capable(ev, sid):
            continue
        readings = readings_of(sid, await latest(i)) if needs_readings(ev, sid) else {}
        views.append(DeviceView(i, sid, by_id[i].consumes, readings))
    return views


def main_service(device):
    """The device profile service (0x10-0xBF) a registered device serves, or None."""
    for s in device.services:
        if 0x10 <= s[0] <= 0xBF:
            return s[0]
    return None


def _energy_ids(sid):
    svc = service(sid)
    out = []
    for name, sign in ENERGY.get(sid, ()):
        row = svc.by_name.get(name) if svc is not None else None
        if row is not None:
            out.append((row[0], sign))
    return out


async def aggregate(store, devices, now, max_age=900.0):
    """{"power": W, "energy": Wh, "online": n, "reporting": n} over the devices."""
    power = energy = 0.0
    online = reporting = 0
    for d in devices:
        if d.presence == "online":
            online += 1
        sid = main_service(d)
        if sid is None:
            continue
        latest = await store.latest(d.id)
        p = latest.get((sid, P))
        if p is not None and p[0] is not None and now - p[1] <= max_age:
            power += float(p[0])
            reporting += 1
        for oid, sign in _energy_ids(sid):
            e = latest.get((sid, oid))
            if e is not None and e[0] is not None:
                energy += sign * float(e[0])
    return {"power": power, "energy": energy, "online": online, "reporting": reporting}
