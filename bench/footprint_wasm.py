"""Footprint of the MicroPython port, measured under MicroPython 1.27 (wasm), with
fakes for the sockets, the clock and the bridge (bench/footprint.py measures on the
real 32-bit unix MicroPython against the real bridge).

    npm ci --prefix tests/micropython && python3 bench/footprint_wasm.py [--json FILE]

Bundles are made by `spot bundle` (ports/cpython/deploy.py, mpy-cross -O3) with
the examples as main scripts, and only their .mpy files are put in
MicroPython's file system: everything below is imported from .mpy, never
from source. Rows:

  bundle        bytes of .mpy in the bundle (heat pump/CoAP, heat pump/MQTT,
                meter/MQTT), and per module for the heat pump over CoAP
  retained      gc.mem_alloc() after gc.collect(), boot minus before boot: the
                runtime booted from spot.json, the profile bound to getters and
                setters, registered with a (scripted) bridge
  peak          the highest gc.mem_alloc() seen during a scenario of reads,
                writes, a subscription with notifications, telemetry and a plan,
                minus the same baseline
  garbage       bytes allocated per notification sent / request served, over N
                of them in one step, minus what the step left reachable: with
                the NTC getters of the example (bound with wire=True: integer
                reads), and with a value the application sets (node.set(), an
                int), the stack's own share

Method. This WebAssembly build frees memory only between the runner's steps
(gc.collect() inside Python merely asks for it; tests/mp_harness.py), and
never inside one. So every scenario operation runs as its own step, and
gc.mem_alloc() read at the end of that step, before the collection, is that
operation's high-water mark: live heap plus every byte it allocated. "peak"
is the largest of those, so it is an upper bound of what a board whose GC
runs only when the heap is exhausted would need. "garbage" reads mem_alloc
before and after N operations in one step (nothing is freed in between, and
gc.disable() is set as well), then subtracts the growth still reachable after
the next collection. The fakes (socket, clock, bridge) are defined before the
baseline and import nothing from spot until the device has, so they add only
their few objects.
"""
import argparse
import base64
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests"))

from mp_harness import run_micropython, MicroPythonError  # noqa: E402
from spot.ports.cpython import deploy as D  # noqa: E402

GOALS = {"bundle": 32 * 1024, "retained": 24 * 1024, "peak": 40 * 1024,
         "garbage_notify": 512}
N_OPS = 40

BUNDLES = (
    ("heat pump over CoAP", "heat_pump", "coap", "coap://10.0.0.9:5683", "esp32_heat_pump.py"),
    ("heat pump over MQTT", "heat_pump", "mqtt", "mqtt://10.0.0.9:1883", "esp32_heat_pump.py"),
    ("meter over MQTT", "meter", "mqtt", "mqtt://10.0.0.9:1883", "rp2040_meter.py"),
)

# ---- MicroPython side -------------------------------------------------------------------

# Step 0: fakes that import nothing from spot (so no spot code lands in the baseline).
FAKES = r'''
import gc, io, sys
sys.path.insert(0, '/')
_r = {}

class Clock:
    now = 0
    def __call__(self):
        return self.now

class Udp(io.IOBase):
    # as a board's socket: select.poll() sees its input (the stream ioctl MP_STREAM_POLL),
    # and a recvfrom() with nothing there raises EAGAIN
    def __init__(self):
        self.inbox = []
        self.out = []
        self.keep = True
        self.sent = 0
        self.acks = [(bytearray(b'\x60\x00\x00\x00'), BRIDGE) for _ in range(4)]
        self.ai = 0
    def bind(self, a): pass
    def setblocking(self, f): pass
    def ioctl(self, req, arg):
        if req == 3:    # MP_STREAM_POLL: which of the asked events are ready (POLLIN 1, POLLOUT 4)
            return arg & (5 if self.inbox else 4)
        return 0
    def recvfrom(self, n):
        if not self.inbox:
            raise OSError(11)
        return self.inbox.pop(0)
    def sendto(self, data, addr):
        self.sent += 1
        if self.keep:
            self.out.append(data)
        elif (data[0] >> 4) & 3 == 0 and 0 < data[1] < 32:
            # a CON request (telemetry POSTed to /s) while datagrams are only counted: the
            # bridge stores it, 2.04 piggybacked (a few bytes, once a minute)
            tkl = data[0] & 15
            self.inbox.append((bytes((0x60 | tkl, 0x44, data[2], data[3])) + data[4:4 + tkl],
                               BRIDGE))
        elif (data[0] >> 4) & 3 == 0:
            # a CON notification while datagrams are only counted: ACK it from a
            # preallocated buffer
            a = self.acks[self.ai]
            self.ai = (self.ai + 1) & 3
            a[0][2] = data[2]
            a[0][3] = data[3]
            self.inbox.append(a)
    def close(self): pass

class Tcp:
    def __init__(self):
        self.inbox = []
        self.out = []
        self.keep = True
    def settimeout(self, t): pass
    def setblocking(self, f): pass
    def connect(self, a): pass
    def read(self, n):
        return self.inbox.pop(0) if self.inbox else None
    def write(self, data):
        if self.keep:
            self.out.append(bytes(data))
        return len(data)
    def close(self): pass

class Net:
    AF_INET = 2
    SOCK_STREAM = 1
    SOCK_DGRAM = 2
    def __init__(self):
        self.udp = Udp()
        self.tcp = Tcp()
    def getaddrinfo(self, host, port, *a):
        return [(2, 1, 0, '', (host, port))]
    def socket(self, af, kind, *a):
        return self.udp if kind == 2 else self.tcp

class Wdt:
    def feed(self): pass

class Board:
    async def net_up(self, cfg, sleep): return True
    def link_ok(self): return True
    def watchdog(self, ms): return Wdt()
    def woke_from_sleep(self): return False
    def deep_sleep(self, ms): pass

class Pin:
    v = 0
    def value(self, v=None):
        if v is None:
            return self.v
        self.v = v

class Adc:
    raw = 30000
    def read_u16(self):
        return self.raw

BRIDGE = ('10.0.0.9', 5683)

def coap_answers(dev, udp):
    # the bridge: ACK every CON from the device; an ANNOUNCE gets its RESULT
    from spot.core import coap, frame as F
    out, udp.out = udp.out, []
    for data in out:
        m = coap.decode(data)
        if m.mtype != coap.CON:
            continue
        payload = b''
        code = coap.EMPTY
        if m.code == coap.POST:
            code = coap.CHANGED
            if m.payload and m.payload[0] & 15 == F.ANNOUNCE:
                payload = F.encode(F.RESULT, 0, F.message_id(m.payload))
        udp.inbox.append((coap.encode_message(coap.ACK, code, m.mid, m.token if code else b'',
                                              (), payload), BRIDGE))

def mqtt_answers(dev, tcp):
    # the broker: CONNACK, SUBACK, PUBACK
    from spot.core import mqtt as M
    out, tcp.out = tcp.out, []
    p = M.StreamParser()
    for data in out:
        for pk in p.feed(data):
            if pk.type == M.CONNECT:
                tcp.inbox.append(M.encode_connack(False, 0))
            elif pk.type == M.SUBSCRIBE:
                tcp.inbox.append(bytes(M.encode_suback(pk.pid, [1] * len(pk.filters))))
            elif pk.type == M.PUBLISH and pk.qos:
                tcp.inbox.append(M.encode_puback(pk.pid))

def turn(ms=0):
    # advance the clock, let the device poll, let the peer answer, poll again
    clock.now += ms
    dev.poll()
    answer(dev, sock)
    dev.poll()

def peak(label=None):
    _r['peak'] = max(_r.get('peak', 0), gc.mem_alloc())
    if label:
        _r['op ' + label] = gc.mem_alloc()

gc.collect()
'''

READING = "_r['base'] = gc.mem_alloc()\n"

# boot, one step per stage (imports, node, binding, start, registration), each ending
# with a high-water reading before the collection
BOOT = [
    "clock = Clock()\nnet = Net()\nimport spot.core.node\npeak('import node')\ngc.collect()\n",
    "from spot.ports.micropython import config, device, hw\npeak('import runtime')\n"
    "gc.collect()\n",
    "from spot.profiles import %(profile)s as profile\npeak('import profile')\ngc.collect()\n",
    "dev = device.Device(config.load('/spot.json'), profile, net=net, clock=clock, board=Board(),"
    " files='/')\npeak('device')\ngc.collect()\n",
    "%(bind)s\ndev.start()\npeak('start')\ngc.collect()\n",
    "if dev.cfg['bridge'].startswith('coap'):\n"
    "    sock, answer = net.udp, coap_answers\n"
    "else:\n"
    "    sock, answer = net.tcp, mqtt_answers\n"
    "for _ in range(4):\n"
    "    turn(10)\n"
    "assert dev.link.up(), 'not registered'\n"
    "peak('register')\n"
    "gc.collect()\n",
]

BIND = {
    "heat_pump": ("hw.bind(dev.node, 'sg_ready', set=hw.SgReady(Pin(), Pin()))\n"
                  "hw.bind(dev.node, 'flow_temp', get=hw.Ntc(Adc(), scale=-1), wire=True)\n"
                  "hw.bind(dev.node, 'outdoor_temp', get=hw.Ntc(Adc(), scale=-1), wire=True)\n"
                  "flow = [35.0]\n"
                  "def set_flow(v):\n"
                  "    flow[0] = v\n"
                  "hw.bind(dev.node, 'flow_setpoint', set=set_flow)\n"
                  "pulses = [0]\n"
                  "hw.bind(dev.node, 'energy_in', get=lambda: pulses[0], wire=True)\n"),
    "meter": ("vals = {}\n"
              "for n in ('v_l1', 'v_l2', 'v_l3', 'i_l1', 'i_l2', 'i_l3', 'p_l1', 'p_l2', 'p_l3',"
              " 'p', 'power_factor', 'f', 'v', 'energy_import', 'energy_export'):\n"
              "    vals[n] = 1.0\n"
              "    hw.bind(dev.node, n, get=(lambda n=n: vals[n]))\n"),
}

AFTER = ("_r['retained'] = gc.mem_alloc() - _r['base']\n"
         "_r['loaded'] = sorted(m[5:] for m in sys.modules if m.startswith('spot.'))\n"
         "_r['boot_peak'] = _r.pop('peak')\n")   # the scenario's peak starts here


def coap_scenario():
    """Steps after boot (CoAP): each one operation, ending with a peak() reading."""
    req = ("from spot.core import coap as _c, frame as _F\n"
           "_mid = [1000]\n"
           "def bus(op, sid, body, observe=None, code=2):\n"
           "    _mid[0] += 1\n"
           "    m = _c.CoapMessage(_c.CON, code, _mid[0], b'\\x42' + bytes((_mid[0] & 255,)))\n"
           "    _c.set_uri(m, 's')\n"
           "    if observe is not None:\n"
           "        m.add(_c.OBSERVE, observe)\n"
           "    m.add(_c.CONTENT_FORMAT, 65000)\n"
           "    m.payload = _F.encode(op, sid, _mid[0], body)\n"
           "    return (_c.encode(m), BRIDGE)\n"
           "gc.collect()\n")
    sid = "0x10"
    steps = [req]
    ops = [
        ("read", "sock.inbox.append(bus(1, %s, [8, 11]))\nturn()\n" % sid),
        ("write", "sock.inbox.append(bus(2, %s, {6: 4, 7: 450}))\nturn()\n" % sid),
        ("subscribe", "sock.inbox.append(bus(4, %s, {8: {0: 0, 1: 60}}, observe=0, code=5))\n"
                      "turn()\n" % sid),
    ]
    for i in range(5):
        ops.append(("notify %d" % i, "Adc.raw += 500\nturn(1000)\n"))
    ops.append(("plan push", "sock.inbox.append(bus(3, 4, [1, [7, 0, 7200, 10, {%s: {6: 1}}]]))\n"
                             "turn()\n" % sid))
    ops.append(("telemetry", "turn(60000)\n"))
    ops.append(("fallback", "turn(1000000)\n"))
    for label, op in ops:
        steps.append(op + "peak(%r)\ngc.collect()\n" % label)
    return steps


def mqtt_scenario(profile):
    sid = "0x10" if profile == "heat_pump" else "0x14"
    req = ("from spot.core import mqtt as _M, frame as _F\n"
           "from spot.core.mqtt_binding import down_topic as _down\n"
           "_mid = [1000]\n"
           "def down(op, sid, body):\n"
           "    _mid[0] += 1\n"
           "    return bytes(_M.encode_publish(_down(dev.cfg['id'], sid), _F.encode(op, sid, "
           "_mid[0], body), 1, False, False, _mid[0]))\n"
           "gc.collect()\n")
    ops = ["sock.inbox.append(down(1, %s, [1, 3]))\nturn()\n" % sid]
    if profile == "heat_pump":
        ops.append("sock.inbox.append(down(2, %s, {6: 4}))\nturn()\n" % sid)
        ops.append("sock.inbox.append(down(3, 4, [1, [7, 0, 7200, 10, {%s: {6: 1}}]]))\nturn()\n"
                   % sid)
    ops.append("sock.inbox.append(down(4, %s, {1: {0: 0, 1: 60}}))\nturn()\n" % sid)
    for _ in range(5):
        ops.append("turn(1000)\n")
    ops.append("turn(60000)\n")
    return [req] + [op + "peak()\ngc.collect()\n" for op in ops]


def _batch(key, body):
    """One step: N times `body` with the collector off; bytes allocated and datagrams sent."""
    return ("gc.disable()\n"
            "_a = gc.mem_alloc()\n"
            "_s = sock.sent\n"
            "for _i in range(%d):\n%s"
            "_r['g_%s'] = gc.mem_alloc() - _a\n"
            "_r['n_%s'] = sock.sent - _s\n"
            "_r['pre'] = _a\n"
            "gc.enable()\n"
            "gc.collect()\n" % (N_OPS, body, key, key),
            "_r['kept_%s'] = gc.mem_alloc() - _r['pre']\n" % key)


def garbage_steps():
    """CoAP heat pump: N idle turns, N turns that each send one notification (the
    bridge observes outdoor_temp with pmin 0 and the ADC toggles every second), N
    READ requests, N turns that each send one notification of dhw_temp, which the
    application sets (node.set(), an int; the ADC stays still), each batch in one
    step. Datagrams are counted, not kept."""
    prep = ("_reqs = [bus(1, 0x10, [8]) for _ in range(%d)]\n"
            "sock.inbox.append(bus(4, 0x10, {11: {0: 0}}, observe=0, code=5))\n"
            "turn()\n"
            "sock.keep = False\n"
            "gc.collect()\n" % N_OPS)
    steps = [prep]
    steps += _batch("idle", "    clock.now += 1\n    dev.poll()\n")
    steps += _batch("notify", "    Adc.raw = 20000 + (_i & 1) * 4000\n"
                              "    clock.now += 1000\n    dev.poll()\n")
    steps += _batch("req", "    sock.inbox.append(_reqs[_i])\n    dev.poll()\n")
    steps.append("sock.inbox.append(bus(4, 0x10, {10: {0: 0}}, observe=0, code=5))\n"
                 "dev.poll()\n"
                 "gc.collect()\n")
    steps += _batch("app", "    dev.node.set(0x10, 10, 40 + (_i & 1) * 4)\n"
                           "    clock.now += 1000\n    dev.poll()\n")
    return steps


REPORT = "print('SPOT-FOOTPRINT', repr(_r))\n"


def mp_files(out, files, cfg):
    fs = {"/" + f: {"base64": base64.b64encode(open(os.path.join(out, f), "rb").read()).decode()}
          for f in files if f.endswith(".mpy")}
    fs["/spot.json"] = json.dumps(cfg)
    return fs


def measure(profile, transport, uri, main, tmp, garbage=False):
    out = os.path.join(tmp, "%s_%s" % (profile, transport))
    files = D.bundle(profile, out, transport=transport, main=os.path.join(REPO, "examples", main))
    cfg = {"id": "dev-1", "profile": profile, "bridge": uri, "telemetry": 60, "comm_timeout": 600,
           "plan": {"heat_pump": {"sg_ready": 2}} if profile == "heat_pump" else None,
           "qos": 0 if transport == "mqtt" else 1}
    steps = [FAKES, READING] + [b % {"profile": profile, "bind": BIND[profile]} for b in BOOT]
    steps.append(AFTER)
    steps += coap_scenario() if transport == "coap" else mqtt_scenario(profile)
    if garbage:
        steps += garbage_steps()
    steps.append(REPORT)
    r = run_micropython(steps, mp_files(out, files, cfg), timeout=120)
    line = [x for x in r.stdout.splitlines() if x.startswith("SPOT-FOOTPRINT ")][-1]
    res = eval(line.split(" ", 1)[1], {})   # a dict of ints printed by MicroPython
    res["bundle"] = D.bundle_size(out, files)
    res["peak"] = res["peak"] - res["base"]
    res["boot_peak"] = res["boot_peak"] - res["base"]
    res["modules"] = {f[len("lib/spot/"):]: os.path.getsize(os.path.join(out, f))
                      for f in files if f.endswith(".mpy")}
    return res


PACKAGES = {"", "core", "profiles", "ports", "ports.micropython"}   # __init__ only


def module_heap(tmp):
    """Retained heap per module of the CoAP heat pump bundle, imported one after another."""
    out = os.path.join(tmp, "heat_pump_coap")
    files = D.bundle("heat_pump", out, main=os.path.join(REPO, "examples", "esp32_heat_pump.py"))
    order = ["core.compat", "core.errors", "core.services", "core.cbor", "core.frame",
             "core.model", "core.subscriptions", "core.plans", "core.node",
             "core.coap", "core.coap_client", "core.coap_server", "core.coap_endpoint",
             "core.coap_binding", "core.coap_rest", "profiles.common", "profiles.heat_pump",
             "ports.micropython.config", "ports.micropython.board", "ports.micropython.hw",
             "ports.micropython.device", "ports.micropython.device_coap"]
    order = [m for m in order if "lib/spot/%s.mpy" % m.replace(".", "/") in files]
    steps = ["import gc, sys\nsys.path.insert(0, '/')\n_r = []\ngc.collect()\n",
             "_r.append(gc.mem_alloc())\n"]
    for m in order:
        steps.append("import spot.%s\ngc.collect()\n" % m)
        steps.append("_r.append(gc.mem_alloc())\n")
    steps.append("print('SPOT-FOOTPRINT', _r)\n")
    r = run_micropython(steps, mp_files(out, files, {}), timeout=120)
    line = [x for x in r.stdout.splitlines() if x.startswith("SPOT-FOOTPRINT ")][-1]
    vals = eval(line.split(" ", 1)[1], {})
    return [(m, vals[i + 1] - vals[i]) for i, m in enumerate(order)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="spot-footprint-")
    rows = []
    for label, profile, transport, uri, main_script in BUNDLES:
        res = measure(profile, transport, uri, main_script, tmp,
                      garbage=(profile, transport) == ("heat_pump", "coap"))
        rows.append((label, res))
    print("| MicroPython 1.27, .mpy bundles | bundle | retained after boot | peak in scenario"
          " | peak during boot |")
    print("|---|---:|---:|---:|---:|")
    for label, res in rows:
        print("| %s | %d | %d | %d | %d |" % (label, res["bundle"], res["retained"],
                                              res["peak"], res["boot_peak"]))
    hp = rows[0][1]

    def per(key):
        return (hp["g_" + key] - hp["kept_" + key]) / N_OPS
    gn, gr, gi, ga = per("notify"), per("req"), per("idle"), per("app")
    print()
    print("| heat pump over CoAP, garbage per operation (N=%d, one step each) | bytes |" % N_OPS)
    print("|---|---:|")
    print("| idle turn (nothing due; %d datagrams) | %.0f |" % (hp["n_idle"], gi))
    print("| turn sending one notification (%d datagrams) | %.0f |" % (hp["n_notify"], gn))
    print("| turn sending one notification of a value set by the application (%d datagrams)"
          " | %.0f |" % (hp["n_app"], ga))
    print("| turn serving one READ over POST /s (%d answers) | %.0f |" % (hp["n_req"], gr))
    print()
    print("| goal (heat pump over CoAP) | goal | measured | met |")
    print("|---|---:|---:|---|")
    for key, val in (("bundle", hp["bundle"]), ("retained", hp["retained"]),
                     ("peak", hp["peak"]), ("garbage_notify", gn)):
        print("| %s | %d | %d | %s |" % (key, GOALS[key], val, "yes" if val <= GOALS[key] else "no"))
    print()
    print("| module (heat pump over CoAP) | .mpy bytes | retained when imported |")
    print("|---|---:|---:|")
    heap = dict(module_heap(tmp))
    for m in sorted(hp["modules"], key=lambda m: -hp["modules"][m]):
        key = m[:-4].replace("/", ".")
        print("| %s | %d | %s |" % (m[:-4], hp["modules"][m],
                                    heap[key] if key in heap else "-"))
    loaded = [m for m in hp["loaded"] if m in heap]
    code = sum(heap[m] for m in loaded)
    unmeasured = sorted(set(hp["loaded"]) - set(heap) - PACKAGES)
    print()
    print("| heat pump over CoAP: what the retained heap after boot is | bytes |")
    print("|---|---:|")
    print("| modules the booted device has loaded (%d, each measured when imported) | %d |"
          % (len(loaded), code))
    print("| run-time state: the rest (node, tables, buffers, links, subscriptions) | %d |"
          % (hp["retained"] - code))
    if unmeasured:
        print("| (loaded but not measured one by one: %s) | |" % ", ".join(unmeasured))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "garbage_notify": gn, "garbage_request": gr,
                       "garbage_idle": gi, "garbage_notify_app": ga,
                       "module_heap": heap, "code_loaded_at_boot": code,
                       "state_after_boot": hp["retained"] - code}, f, indent=1, default=str)


if __name__ == "__main__":
    try:
        main()
    except MicroPythonError as e:
        print(e, file=sys.stderr)
        print(e.result.stdout[-2000:], file=sys.stderr)
        sys.exit(1)
