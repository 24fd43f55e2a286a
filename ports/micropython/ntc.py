"""Temperature of an NTC thermistor on an ADC (hw.Ntc: bound to a profile's object with
hw.bind, this module loaded at its first use)."""
from array import array

from ...core.compat import const

# the NTC table: the divider's ADC reading at every _STEP Cel from _T_LO to _T_HI
_T_LO = const(-55)
_T_HI = const(157)   # -55 + 53 steps of 4
_STEP = const(4)
_tables = {}    # (r_fixed / r25, beta) -> table, shared by sensors of the same parts


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
        key = (r_fixed / r25, beta)
        table = _tables.get(key)
        if table is None:
            # Beta equation: R / r25 = exp(beta / T - beta / 298.15 K); the reading is
            # 65535 x / (1 + x), x = R / r_fixed (few floats per entry: each is garbage)
            from math import exp, log
            a = beta / 298.15 + log(key[0])
            table = array('H', bytes(2 * ((_T_HI - _T_LO) // _STEP + 1)))
            i = 0
            for t in range(_T_LO, _T_HI + 1, _STEP):
                table[i] = int(65535.5 - 65535 / (1 + exp(beta / (t + 273.15) - a)))
                i += 1
            _tables[key] = table   # shared once whole (a failure above leaves none)
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
        u = 10 if self.scale is None else 10 ** -self.scale   # result units per Cel
        t = (_T_LO + lo * _STEP) * u
        if d:
            t += ((a - raw) * _STEP * u + d // 2) // d
        return t if self.scale is not None else t / u
