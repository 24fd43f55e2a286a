"""The object model: value types, access rights and profile tables.

A profile (service) is data: a module with SERVICE (id), NAME, VERSION
(major, minor) and OBJECTS, a tuple of rows

    (id, name, type, unit, access, mandatory, lo, hi, scale)

`scale` is a power-of-ten exponent: an analog with scale -1 travels as the
integer value*10 (21.5 Cel -> 215); scale None means "shortest exact float".
lo/hi bound the value in SI units (for TEXT: hi is the maximum length; for
SCHEDULE and CURVE: they bound every value / coordinate).
Values are held and sent in wire form; to_wire()/from_wire() convert.
"""
from .compat import const, MICROPYTHON
from .errors import SpotError

# core.errors' codes, copied: no global slot holds them on a board
_UNKNOWN_OBJECT = const(2)
_OUT_OF_RANGE = const(4)
_WRONG_TYPE = const(5)
_TOO_LARGE = const(7)

# core/model_numbers.py's numbers that this module uses, as private constants: no
# global slot holds them on a board
_NONE = const(0)
_ANALOG = const(1)
_BINARY = const(2)
_ENUM = const(3)
_COUNTER = const(4)
_TIME = const(5)
_SCHEDULE = const(6)
_CURVE = const(7)
_TEXT = const(8)
_ALARM = const(9)
_PLAN = const(10)
_MAP = const(11)
_MAX_SLOTS = const(192)
_MAX_POINTS = const(16)
_ID = const(0)
_NAME = const(1)
_TYPE = const(2)
_LO = const(6)
_HI = const(7)
_SCALE = const(8)

if MICROPYTHON:
    def __getattr__(name):
        # model.ANALOG, `from .model import ANALOG`, model.TYPE_NAMES: core/model_numbers,
        # imported on first use (this module and the device-side ones use private copies
        # and never ask)
        from . import model_numbers
        return getattr(model_numbers, name)
else:
    from .model_numbers import *  # noqa: F401,F403  the numbers as this module's attributes


class Service:
    """Run-time view of one profile table."""

    __slots__ = ("sid", "name", "version", "rows", "_by_id", "_by_name")

    def __init__(self, sid, name, version, rows):
        self.sid = sid
        self.name = name
        self.version = version
        self.rows = rows
        self._by_id = None
        self._by_name = None

    @property
    def by_id(self):
        """{id: row}, made on first use (a board finds its rows with get(): no table)."""
        if self._by_id is None:
            self._by_id = {r[_ID]: r for r in self.rows}
        return self._by_id

    @property
    def by_name(self):
        """{name: row}, made on first use (a device finds its few names with named())."""
        if self._by_name is None:
            self._by_name = {r[_NAME]: r for r in self.rows}
        return self._by_name

    def get(self, oid):
        """The row of object oid, or None: from by_id once it is made, else found in the
        rows (a profile's few dozen; a board keeps no table of them)."""
        if self._by_id is not None:
            return self._by_id.get(oid)
        for r in self.rows:
            if r[_ID] == oid:
                return r
        return None

    def named(self, name):
        """The row called name, or None (no table made: boards look up names at boot)."""
        for r in self.rows:
            if r[_NAME] == name:
                return r
        return None

    def row(self, oid):
        r = self.get(oid)
        if r is None:
            raise SpotError(_UNKNOWN_OBJECT, oid)
        return r


def service_of(module):
    """A Service from a profile module (or a Service, returned as is)."""
    if isinstance(module, Service):
        return module
    return Service(module.SERVICE, module.NAME, module.VERSION, module.OBJECTS)


def _scaled(v, scale):
    # SI value -> wire number
    if scale is None:
        return float(v) if type(v) is not int else v
    if scale == 0:
        return int(round(v))
    if scale < 0:
        return int(round(v * 10 ** -scale))
    return int(round(v / 10 ** scale))


def _unscaled(n, scale):
    # wire number -> SI value
    if scale is None or scale == 0:
        return n
    if scale < 0:
        return n / 10 ** -scale
    return n * 10 ** scale


def _convert(row, value, number):
    # value with every number of it passed through number(n, scale); the lists are
    # built by a loop, not a comprehension: no closure cells on MicroPython
    t = row[_TYPE]
    if t == _ANALOG or t == _COUNTER:
        return number(value, row[_SCALE])
    if t != _SCHEDULE and t != _CURVE:
        return value
    s = row[_SCALE]
    out = []
    for v in value[2] if t == _SCHEDULE else value:   # a schedule's slots, a curve's points
        out.append(None if v is None else number(v, s))
    return [value[0], value[1], out] if t == _SCHEDULE else out


def to_wire(row, value):
    """Wire form of an SI value for the object row (no checks)."""
    return _convert(row, value, _scaled)


def from_wire(row, value):
    """SI value of a wire value for the object row."""
    if not row[_SCALE]:   # None or 0: the wire value is the SI value
        return value
    return _convert(row, value, _unscaled)


def _number(row, v):
    # check one scaled/float number against type and range
    tv = type(v)
    if tv is not int and (tv is not float or row[_SCALE] is not None):
        raise SpotError(_WRONG_TYPE, row[_ID])
    lo = row[_LO]
    hi = row[_HI]
    if lo is not None or hi is not None:
        si = _unscaled(v, row[_SCALE])
        if (lo is not None and si < lo) or (hi is not None and si > hi):
            raise SpotError(_OUT_OF_RANGE, row[_ID])


def _uint(v):
    return type(v) is int and v >= 0


def check_schedule(row, v):
    """Raise SpotError unless v is [start, step, slots] of the object row: of a SCHEDULE
    object its value, each slot a number; of another object a plan's schedule of it, each
    slot a value of the object."""
    oid = row[_ID]
    if (type(v) is not list or len(v) != 3 or not _uint(v[0])
            or not _uint(v[1]) or v[1] == 0 or type(v[2]) is not list):
        raise SpotError(_WRONG_TYPE, oid)
    if len(v[2]) > _MAX_SLOTS:
        raise SpotError(_TOO_LARGE, oid)
    number = row[_TYPE] == _SCHEDULE
    for x in v[2]:
        if x is None:
            continue
        if number:
            _number(row, x)
        else:
            check(row, x)


def check(row, v):
    """Raise SpotError unless wire value v fits the object row."""
    t = row[_TYPE]
    oid = row[_ID]
    if t == _ANALOG:
        _number(row, v)
    elif t == _BINARY:
        if type(v) is not bool:
            raise SpotError(_WRONG_TYPE, oid)
    elif t == _ENUM or t == _COUNTER or t == _TIME:
        if not _uint(v):
            raise SpotError(_WRONG_TYPE, oid)
        if t != _TIME:
            _number(row, v)
    elif t == _TEXT:
        if type(v) is not str:
            raise SpotError(_WRONG_TYPE, oid)
        if row[_HI] is not None and len(v) > row[_HI]:
            raise SpotError(_TOO_LARGE, oid)
    elif t == _SCHEDULE:
        check_schedule(row, v)
    elif t == _CURVE:
        if type(v) is not list or len(v) & 1 or len(v) < 4:
            raise SpotError(_WRONG_TYPE, oid)
        if len(v) > 2 * _MAX_POINTS:
            raise SpotError(_TOO_LARGE, oid)
        for x in v:
            _number(row, x)
    elif t == _ALARM:
        if (type(v) is not list or len(v) != 4 or not _uint(v[0])
                or not _uint(v[1]) or not _uint(v[2]) or type(v[3]) is not bool):
            raise SpotError(_WRONG_TYPE, oid)
    elif t == _NONE:
        if v is not None:
            raise SpotError(_WRONG_TYPE, oid)
    elif t == _MAP:
        if type(v) is not dict:
            raise SpotError(_WRONG_TYPE, oid)
    elif t == _PLAN:
        if type(v) is not list:
            raise SpotError(_WRONG_TYPE, oid)


def schedule_at(value, t):
    """The slot value of a wire schedule at time t, or None outside it."""
    start, step, slots = value
    if t < start:
        return None
    i = int((t - start) // step)
    if i >= len(slots):
        return None
    return slots[i]


def schedule_next_edge(value, t):
    """The next slot boundary after t, or None after the schedule ends."""
    start, step, slots = value
    if t < start:
        return start
    i = int((t - start) // step) + 1
    if i > len(slots):
        return None
    return start + i * step
