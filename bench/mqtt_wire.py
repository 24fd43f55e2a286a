"""Bytes on the wire for one heat-pump telemetry report as an MQTT PUBLISH.

    python3 bench/mqtt_wire.py           # a markdown table

The report: nine measurements and a timestamp (bench/wire_size.py TELEMETRY).
Each row is one MQTT 3.1.1 PUBLISH built by core.mqtt.encode_publish: fixed
header (1 byte + remaining length), topic (2-byte length + name), packet id
(QoS 1 only) and payload. QoS 1 costs a 4-byte PUBACK back as well.

- SPOT frame on spot/v1/<device>/<sid>/up (spec section 9.2), plain and
  sealed (OSCORE, core.secure_frame; the Partial IV grows by one byte at
  sequence numbers 256 and 65536, so the sealed size is given for the first
  255 messages and for message 1000).
- The same values as SenML-CBOR (RFC 8428), with LwM2M object paths and with
  readable names, on an LwM2M-style topic that names endpoint and operation
  (lwm2m/<endpoint>/up/notify, the convention of the EMQX LwM2M gateway).
TCP/IP and TLS record overheads are the same for all rows and left out.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

import wire_size  # noqa: E402  (TELEMETRY values and the SenML encodings)
from spot.core.mqtt import encode_publish  # noqa: E402
from spot.core.mqtt_binding import up_topic  # noqa: E402
from spot.core.oscore import SecurityContext  # noqa: E402
from spot.core.secure_frame import seal  # noqa: E402
from spot.core.services import HEAT_PUMP  # noqa: E402

DEVICE = "hp-1"
PUBACK = 4
SECRET = bytes(range(16))


def sealed(frame, seq):
    ctx = SecurityContext(SECRET, b"\x01", b"\x02", sender_seq=seq)
    return seal(ctx, frame)


def rows():
    frame = wire_size.spot_frames()["telemetry"]
    spot_topic = up_topic(DEVICE, HEAT_PUMP)
    lwm2m_topic = "lwm2m/%s/up/notify" % DEVICE
    return [
        ("SPOT frame", spot_topic, frame),
        ("SPOT frame, sealed (messages 1-255)", spot_topic, sealed(frame, 0)),
        ("SPOT frame, sealed (message 1000)", spot_topic, sealed(frame, 999)),
        ("SenML-CBOR, LwM2M paths", lwm2m_topic, wire_size.senml_cbor(True)["telemetry"]),
        ("SenML-CBOR, readable names", lwm2m_topic, wire_size.senml_cbor(False)["telemetry"]),
    ]


def publish_size(topic, payload, qos):
    return len(encode_publish(topic, payload, qos, False, False, 1 if qos else 0))


def main():
    table = rows()
    base = publish_size(table[0][1], table[0][2], 0)
    print("| telemetry report (9 values + time) | topic | topic bytes | payload | "
          "PUBLISH QoS 0 | PUBLISH QoS 1 | QoS 1 + PUBACK | vs SPOT QoS 0 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, topic, payload in table:
        q0 = publish_size(topic, payload, 0)
        q1 = publish_size(topic, payload, 1)
        print("| %s | `%s` | %d | %d | %d | %d | %d | %.2f |" % (
            name, topic, len(topic), len(payload), q0, q1, q1 + PUBACK, q0 / base))


if __name__ == "__main__":
    main()
