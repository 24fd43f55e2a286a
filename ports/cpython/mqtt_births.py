"""Births and deaths on a device's announce topic, read on the cloud side (spec 9.2),
the topic filters a cloud-side client subscribes, and which messages and frames it
takes.

Shared by the bridge's MQTT link (cloud_bridge/mqtt_link.py) and
ports/cpython/mqtt_transport.BridgeMqtt; no MQTT client here.
"""
from ...core import frame as F
from ...core.errors import SpotError
from ...core.mqtt_binding import ANNOUNCE, ROOT, UP, parse_topic
from ...core.node import A_ID


def bridge_filters(share_group=None, reply_key=None):
    """[(filter, QoS 1)] of the cloud side: every device's /up (as $share/<group>/...
    with a share group), every announce topic, and with a reply key the answers
    addressed to it (.../up/<reply_key>)."""
    up = ROOT + "+/+/up"
    if share_group is not None:
        up = "$share/%s/%s" % (share_group, up)
    filters = [(up, 1), (ROOT + "+/announce", 1)]
    if reply_key is not None:
        filters.append((ROOT + "+/+/up/" + reply_key, 1))
    return filters


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


def addressed(topic, reply_key=None):
    """(kind, device, service) of a message the cloud side takes: a birth or death
    (ANNOUNCE) or a device's /up, plain or addressed to reply_key; ValueError(why)
    for any other topic."""
    t = parse_topic(topic)
    if t is None:
        raise ValueError("topic outside the scheme")
    kind, device, sid, reply = t
    if kind != ANNOUNCE and (kind != UP or (reply is not None and reply != reply_key)):
        raise ValueError("not a topic for the bridge")
    return kind, device, sid


def frame_head(frame, sid):
    """(message id, op) of an opened frame sent on service sid's /up; ValueError(why)
    if it is no frame of that service."""
    mid = F.message_id(frame)
    if mid is None or frame[1] != sid or frame[0] >> 4 != F.VERSION:
        raise ValueError("not a frame of the topic's service")
    return mid, frame[0] & 0x0F
