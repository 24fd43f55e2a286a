"""Hardware binding: tie profile objects to pins and ADCs (a Modbus meter: modbus.py).

    hw.bind(node, 'sg_ready', set=hw.SgReady(Pin(26, Pin.OUT), Pin(27, Pin.OUT)))
    hw.bind(node, 'outdoor_temp', get=hw.Ntc(ADC(Pin(34)), scale=-1), wire=True)

A getter is a callable returning the SI value (or None when unknown), a setter
a callable taking it; the node calls them on reads, writes, plans and
notifications. With wire=True they speak the object's wire value instead: for
a scaled number an integer in units of 10**scale (the scale is in the object's
row of its profile, e.g. -1 for 0.1 Cel), so a read makes no float (each float
is a heap object on MicroPython). Pins and ADCs are anything with MicroPython's
methods (value(), read_u16()), so tests pass fakes.
"""
from array import array

from ...core.compat import const

_SCALE = const(8)     # core.model's row field, copied: no global slot holds it on a board


def bind(node, name, get=None, set=None, service=None, wire=False):
    """Bind the object called `name` of `service` (default: the node's only
    device profile, service id >= 0x10) to get() and/or set(value); wire=True:
    they give and take wire values (see the module docstring). A getter with a
    `scale` attribute (hw.Ntc) must have the object's scale when bound with wire=True."""
    services = node.services
    for sid in services:
        row = services[sid].named(name)
        if row is not None and (sid == service or (service is None and sid >= 0x10)):
            if wire and getattr(get, 'scale', row[_SCALE]) != row[_SCALE]:
                raise ValueError('%s has scale %s, the getter %s' % (name, row[_SCALE], get.scale))
            node.bind(sid, row[0], get, set, wire)
            return
    raise ValueError('no object %r to bind' % name)


# SG-Ready state 1 blocked, 2 normal, 3 recommended, 4 forced on: relay 1 + 2 * relay 2
SG_RELAYS = (1, 0, 2, 3)


class SgReady:
    """The two SG-Ready relay outputs of a heat pump as one setter (and getter).
    The state is an integer either way, so it binds with or without wire=True."""

    def __init__(self, relay1, relay2):
        self.relay1 = relay1
        self.relay2 = relay2

    def __call__(self, state=None):
        if state is None:     # used as a getter: the state the relays show
            return SG_RELAYS.index(self.relay1.value() + 2 * self.relay2.value()) + 1
        bits = SG_RELAYS[int(state) - 1]
        self.relay1.value(bits & 1)
        self.relay2.value(bits >> 1)


# the NTC table: the divider's ADC reading at every _STEP Cel from _T_LO to _T_HI
_T_LO = const(-55)
_T_HI = const(157)   # -55 + 53 steps of 4
_STEP = const(4)
_tables = {}    # (r_fixed / r25, beta) -> table, shared by sensors of the same parts


def _ntc_table(k, beta):
    # Beta equation: R / r25 = exp(beta / T - beta / 298.15 K); the reading is
    # 65535 x / (1 + x), x = R / r_fixed = R / r25 / k (few floats per entry: each is garbage)
    from math import exp, log
    a = beta / 298.15 + log(k)
    table = array('H', bytes(2 * ((_T_HI - _T_LO) // _STEP + 1)))
    i = 0
    for t in range(_T_LO, _T_HI + 1, _STEP):
        table[i] = int(65535.5 - 65535 / (1 + exp(beta / (t + 273.15) - a)))
        i += 1
    return table


class Ntc:
    """Temperature of an NTC thermistor from the low side of a divider on an ADC.

    r_fixed: the divider's fixed resistor; r25, beta: the thermistor's data.
    scale None: the getter gives Cel (a float, to 0.1); an integer (<= 0): it
    gives integers in 10**scale Cel, the wire value of an object with that
    scale, to bind with wire=True. Either way a read uses integers only: the
    ADC readings every 4 Cel from -55 to 157 Cel are computed once (a table of
    54 shorts, shared by sensors of the same parts) and interpolated, within
    0.2 Cel of the Beta equation (0.13 above -20 Cel). Outside that range (an
    open or shorted sensor, too) the temperature is unknown: None."""

    def __init__(self, adc, r_fixed=10000, r25=10000, beta=3950, scale=None):
        if scale is not None and scale > 0:
            raise ValueError('scale must be <= 0')
        self.adc = adc
        self.scale = scale
        self.unit = 10 ** -(-1 if scale is None else scale)   # result units per Cel
        key = (r_fixed / r25, beta)
        table = _tables.get(key)
        if table is None:
            table = _tables[key] = _ntc_table(key[0], beta)
        self.table = table

    def __call__(self):
        raw = self.adc.read_u16()
        tab = self.table
        lo = 0
        hi = len(tab) - 1
        if raw > tab[lo] or raw < tab[hi]:
            return None
        while hi - lo > 1:      # readings fall as the temperature rises
            mid = (lo + hi) >> 1
            if tab[mid] >= raw:
                lo = mid
            else:
                hi = mid
        a = tab[lo]
        d = a - tab[hi]
        u = self.unit
        t = (_T_LO + lo * _STEP) * u
        if d:
            t += ((a - raw) * _STEP * u + d // 2) // d
        return t if self.scale is not None else t / u
