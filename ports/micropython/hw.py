"""Hardware binding: tie profile objects to pins and ADCs (a Modbus meter: modbus.py;
an NTC thermistor: ntc.py, loaded at the first use of hw.Ntc; a heat pump's SG-Ready
relays: sg_ready.py, loaded at the first use of hw.SgReady).

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


def __getattr__(name):
    # hw.Ntc lives in ntc.py, hw.SgReady in sg_ready.py, each loaded at its first use: a
    # board reading no thermistor, or driving no SG-Ready relays, holds none of it (a
    # module's __getattr__ is asked only for a name it lacks)
    if name == 'Ntc':
        from .ntc import Ntc
        return Ntc
    if name == 'SgReady':
        from .sg_ready import SgReady
        return SgReady
    raise AttributeError(name)
