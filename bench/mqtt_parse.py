"""Receive cost of one MQTT PUBLISH in core's client (core/mqtt.py StreamParser and
core/mqtt_client.py), the path every message to the bridge and to a board takes.

    python3 bench/mqtt_parse.py
    python3 bench/mqtt_parse.py --baseline=../spot-before --repeat=3 \
        [--micropython=PATH/TO/micropython]

A stream of 4 096 QoS 1 PUBLISH packets of the bridge's usual size (the 44-byte
heat-pump telemetry frame on spot/v1/hp-00001/10/up: 68 bytes) is fed to
MqttClient.take_in in chunks of 4 096 bytes (the client as the bridge runs it: no
PUBACK of its own, no PUBACK events) and the events taken; the least of 25 passes,
in ns a packet. Each variant runs in its own process, alternating with --baseline
(the same with `spot` imported from that tree). With --micropython the same runs
on that MicroPython binary as well (e.g. the 32-bit unix build of tests/mp_real.py).
"""
import sys
import time

PACKETS, PASSES, CHUNK = 4096, 25, 4096
FRAME = bytes(range(44))


if hasattr(time, "perf_counter_ns"):
    def _now():
        return time.perf_counter_ns()

    def _since(t0):
        return time.perf_counter_ns() - t0
else:   # MicroPython: ticks wrap, ticks_diff does not
    def _now():
        return time.ticks_us()

    def _since(t0):
        return time.ticks_diff(time.ticks_us(), t0) * 1000


def measure():
    """ns a PUBLISH: the least of PASSES passes (portable: runs on MicroPython too)."""
    from spot.core.mqtt import encode_connack, encode_publish
    from spot.core.mqtt_client import MqttClient
    one = bytes(encode_publish("spot/v1/hp-00001/10/up", FRAME, 1, False, False, 1))
    stream = one * PACKETS
    chunks = [stream[i:i + CHUNK] for i in range(0, len(stream), CHUNK)]
    best = None
    for _ in range(PASSES):
        c = MqttClient("bench", max_packet=65536)
        c.ack_on_receive = False
        c.puback_events = False
        c.connect(0)
        c.receive(encode_connack(False, 0), 0)
        n = 0
        t0 = _now()
        for chunk in chunks:
            c.take_in(chunk, 1)
            n += len(c.take_events())
        spent = _since(t0)
        assert n == PACKETS, n
        if best is None or spent < best:
            best = spent
    return best // PACKETS


def run_variant(python, code):
    import os
    import subprocess
    env = dict(os.environ)
    env["PYTHONPATH"] = code
    args = [python]
    if "micropython" in os.path.basename(python):
        args += ["-X", "heapsize=8m"]
    out = subprocess.run(args + [__file__, "--child", code], capture_output=True,
                         text=True, env=env, timeout=600)
    if out.returncode:
        raise SystemExit(out.stdout + out.stderr)
    return int(out.stdout.strip().splitlines()[-1])


def main(argv):
    if argv[:1] == ["--child"]:
        sys.path.insert(0, argv[1])
        print(measure())
        return
    import os
    import tempfile
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    from bridge_ingest import baseline_path, option
    repeat = int(option(argv, "repeat", 1))
    base = option(argv, "baseline")
    pythons = [("CPython", sys.executable)]
    mp = option(argv, "micropython")
    if mp:
        pythons.append(("MicroPython", mp))
    with tempfile.TemporaryDirectory() as tmp:
        trees = [("this tree", baseline_path(os.path.dirname(here), tmp))]
        if base:
            trees.append(("baseline", baseline_path(base, tmp)))
        print("load average before: %s" % " ".join("%.2f" % x for x in os.getloadavg()))
        print()
        print("| run | " + " | ".join("%s, %s" % (p, t) for p, _ in pythons for t, _ in trees)
              + " |")
        print("|---|" + "---:|" * (len(pythons) * len(trees)))
        for k in range(repeat):
            row = [run_variant(py, code) for _, py in pythons for _, code in trees]
            print("| %d | %s |" % (k + 1, " | ".join(str(x) for x in row)))
        print()
        print("ns a PUBLISH received: the least of %d passes of %d" % (PASSES, PACKETS))
        print("load average after: %s" % " ".join("%.2f" % x for x in os.getloadavg()))


if __name__ == "__main__":
    main(sys.argv[1:])
