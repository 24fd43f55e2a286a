"""Bytes on the wire for one heat-pump telemetry notification over CoAP.

    python3 bench/coap_wire.py        # a markdown table

The telemetry is bench/wire_size.py's TELEMETRY (9 values and a timestamp).
- SPOT: the NOTIFY frame a real CoapDevice sends for a bus observation
  (FETCH /s + Observe with a SUBSCRIBE frame), taken from the datagram the device
  emits; then the same with OSCORE (the observation registered by a protected
  request, the notification protected with its own Partial IV).
- LwM2M 1.1: an Observe-Composite notification with the same values as SenML-CBOR
  (content-format 112), paths as in bench/wire_size.py (IPSO objects), built with
  cbor2 and a real CoAP header from aiocoap.Message.encode(); then the same with
  OSCORE (protected by core.oscore exactly like SPOT's).
Both notifications are NON (the endpoint sends every 8th as CON; a CON adds a
4-byte empty ACK back), with the same 4-byte token and the same Observe number.
UDP payload = the whole CoAP message. DTLS 1.2 instead of OSCORE would add its
record header, explicit nonce and CCM-8 tag to either: 13 + 8 + 8 = 29 bytes.
"""
import os
import sys

import cbor2
import aiocoap
from aiocoap.numbers.types import NON

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from wire_size import TELEMETRY, T0, HP  # noqa: E402
from spot.core import coap, model  # noqa: E402
from spot.core import frame as F  # noqa: E402
from spot.core.coap import CoapMessage  # noqa: E402
from spot.core.coap_binding import CoapDevice, CF_SPOT  # noqa: E402
from spot.core.coap_endpoint import Endpoint  # noqa: E402
from spot.core.coap_oscore import OscoreServer, OPTION_FORMAT  # noqa: E402
from spot.core.node import Node  # noqa: E402
from spot.core.oscore import SecurityContext  # noqa: E402
from spot.core.services import HEAT_PUMP, TIME  # noqa: E402
from spot.profiles import heat_pump  # noqa: E402

CLIENT = ("192.0.2.10", 40000)   # opaque address for the sans-I/O endpoint
TOKEN = b"\x5a\x17\xc3\x02"
SECRET = b"bench-secret-016"
CLIENT_KID, DEVICE_KID = b"\x01", b"\xd0"
DTLS_OVERHEAD = 13 + 8 + 8
CF_SENML_CBOR = 112


def telemetry_ids():
    return {HP.by_name[name][model.ID]: model.to_wire(HP.by_name[name], v)
            for name, v, *_ in TELEMETRY}


def spot_notification(protected):
    """The datagram a device sends for one telemetry NOTIFY on a bus observation."""
    node = Node([heat_pump], "hp-1")
    node.receive(F.encode(F.WRITE, TIME, 1, {1: T0}), 1, None)   # unix time T0 at step(1 s)
    oscore = None
    client = None
    if protected:
        oscore = OscoreServer([SecurityContext(SECRET, DEVICE_KID, CLIENT_KID)])
        client = SecurityContext(SECRET, CLIENT_KID, DEVICE_KID)
    dev = CoapDevice(node, Endpoint(), oscore=oscore)
    dev.step(0)
    ids = telemetry_ids()
    sub = F.encode(F.SUBSCRIBE, HEAT_PUMP, 0, {oid: None for oid in ids})
    if protected:
        code, option, ct, _ = client.protect_request(
            coap.FETCH, [(coap.OBSERVE, b""), (coap.URI_PATH, b"s"),
                         (coap.CONTENT_FORMAT, coap.encode_uint(CF_SPOT))], sub)
        req = CoapMessage(coap.CON, code, 1, TOKEN, [(coap.OBSERVE, b""), (coap.OSCORE, option)],
                          ct)
    else:
        req = coap.set_uri(CoapMessage(coap.CON, coap.FETCH, 1, TOKEN), "s")
        req.add(coap.OBSERVE, 0).add(coap.CONTENT_FORMAT, CF_SPOT)
        req.payload = sub
    [(_, ack)] = dev.receive(coap.encode(req), CLIENT, 0)
    assert coap.decode(ack, extra_options=OPTION_FORMAT).code >> 5 == 2
    for name, v, *_ in TELEMETRY:
        node.set(HEAT_PUMP, HP.by_name[name][model.ID], v)
    [(_, note)] = dev.step(1000)
    msg = coap.decode(note, extra_options=OPTION_FORMAT)
    return note, msg


def lwm2m_senml():
    """SenML-CBOR records of an LwM2M 1.1 composite notification (same values)."""
    recs = []
    for k, (name, v, unit, path, _) in enumerate(TELEMETRY):
        rec = {0: path, 2: v}
        if k == 0:
            rec[-3] = T0          # base time
        recs.append(rec)
    return cbor2.dumps(recs, canonical=True)


def lwm2m_notification(observe, mid, protected):
    payload = lwm2m_senml()
    if not protected:
        msg = aiocoap.Message(code=aiocoap.CONTENT, observe=observe,
                              content_format=CF_SENML_CBOR, payload=payload)
        return _encode(msg, mid)
    # protect like any OSCORE notification: inner 2.05 + Observe + Content-Format
    client = SecurityContext(SECRET, CLIENT_KID, DEVICE_KID)
    server = SecurityContext(SECRET, DEVICE_KID, CLIENT_KID)
    _, option, ct, _ = client.protect_request(coap.GET, [(coap.OBSERVE, b"")])
    binding = server.unprotect_request(option, ct)[3]
    server.protect_response(binding, coap.CONTENT, [(coap.OBSERVE, b"")], b"")  # registration
    code, opt, ct = server.protect_response(
        binding, coap.CONTENT,
        [(coap.OBSERVE, b""), (coap.CONTENT_FORMAT, coap.encode_uint(CF_SENML_CBOR))],
        payload, new_piv=True)
    msg = aiocoap.Message(code=code, observe=observe, payload=ct)
    msg.opt.oscore = opt
    return _encode(msg, mid)


def _encode(msg, mid):
    msg.mtype = NON
    msg.mid = mid
    msg.token = TOKEN
    return msg.encode()


def rows():
    plain, pmsg = spot_notification(False)
    sealed, smsg = spot_notification(True)
    observe = pmsg.get_uint(coap.OBSERVE)
    frame = pmsg.payload
    assert F.decode(frame)[3] == [T0, telemetry_ids()]
    lw = lwm2m_notification(observe, pmsg.mid, False)
    lws = lwm2m_notification(observe, pmsg.mid, True)
    assert aiocoap.Message.decode(lw).payload == lwm2m_senml()
    return [
        ("SPOT NOTIFY on a bus observation (FETCH /s), ct %d" % CF_SPOT,
         "NON", len(plain), len(frame)),
        ("SPOT NOTIFY, OSCORE", "NON", len(sealed), len(frame)),
        ("LwM2M 1.1 composite notification, SenML-CBOR (ct 112)", "NON", len(lw),
         len(lwm2m_senml())),
        ("LwM2M 1.1 composite notification, SenML-CBOR, OSCORE", "NON", len(lws),
         len(lwm2m_senml())),
    ], pmsg, smsg


def main():
    table, pmsg, smsg = rows()
    print("One heat-pump telemetry notification (9 values + timestamp), 4-byte token,")
    print("Observe number %d, NON. Bytes = UDP payload (CoAP header included)."
          % pmsg.get_uint(coap.OBSERVE))
    print()
    print("| message | type | UDP payload | of which frame / SenML body"
          " | with DTLS 1.2 instead |")
    print("|---|---|---:|---:|---:|")
    for name, mtype, size, body in table:
        dtls = "" if "OSCORE" in name else str(size + DTLS_OVERHEAD)
        print("| %s | %s | %d | %d | %s |" % (name, mtype, size, body, dtls))
    spot, lw = table[0][2], table[2][2]
    print()
    print("SPOT / LwM2M: %.2f plain, %.2f with OSCORE." % (spot / lw, table[1][2] / table[3][2]))
    print("OSCORE adds %d bytes to the SPOT notification (option with Partial IV, inner code"
          " and options, 8-byte tag)." % (table[1][2] - spot))


if __name__ == "__main__":
    main()
