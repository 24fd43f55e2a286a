"""MQTT 3.1.1's numbers by name: control packet types, their names, CONNACK return
codes' meanings, limits and the fixed two-byte packets, for code that names them (the
bridge, tests, a broker double): `mqtt.PUBLISH` and `from spot.core.mqtt import PUBLISH`
read them here; packet names and what a CONNACK return code means, for messages.

core/mqtt.py and core/mqtt_client.py use private copies (`_PUBLISH = const(3)`,
checked by tests/test_mp_private_constants.py), folded into their code by mpy-cross,
so a board imports this module only for a diagnostic or when something asks core.mqtt
for a number by name.
"""
from .compat import const

# Control packet types (MQTT 3.1.1 section 2.2.1); 0 and 15 are reserved.
CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ = const(12)
PINGRESP = const(13)
DISCONNECT = const(14)

PACKET_NAMES = ('reserved', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC',
                'PUBREL', 'PUBCOMP', 'SUBSCRIBE', 'SUBACK', 'UNSUBSCRIBE',
                'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'reserved')

MAX_REMAINING_LENGTH = const(268435455)   # 4-byte varint maximum
DEFAULT_MAX_PACKET = const(16384)         # whole packet, fixed header included

# CONNACK return codes (section 3.2.2.3)
CONNACK_REASONS = ('accepted', 'unacceptable protocol version',
                   'identifier rejected', 'server unavailable',
                   'bad user name or password', 'not authorized')
SUBACK_FAILURE = const(0x80)

PINGREQ_PACKET = b'\xc0\x00'
PINGRESP_PACKET = b'\xd0\x00'
DISCONNECT_PACKET = b'\xe0\x00'


def connack_reason(code):
    """What a CONNACK return code means, for a message."""
    return CONNACK_REASONS[code] if code < len(CONNACK_REASONS) else 'code %d' % code
