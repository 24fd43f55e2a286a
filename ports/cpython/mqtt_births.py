"""Births and deaths on a device's announce topic, read on the cloud side (spec 9.2).

Shared by the bridge's MQTT link (cloud_bridge/mqtt_link.py) and
ports/cpython/mqtt_transport.BridgeMqtt; no MQTT client here.
"""
from ...core import frame as F
from ...core.errors import SpotError
from ...core.node import A_ID


def birth_of(device, payload):
    """The ANNOUNCE body of a birth on device's announce topic, None for a death
    (empty: the will or a clean shutdown); ValueError(why) for anything else."""
    if not payload:
        return None
    try:
        op, sid, _, body = F.decode(payload)
    except SpotError as e:
        raise ValueError("bad ANNOUNCE: %s" % (e,))
    if op != F.ANNOUNCE or type(body) is not dict or body.get(A_ID) != device:
        raise ValueError("ANNOUNCE not of the topic's device")
    return body
