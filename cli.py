"""The `spot` command line: decode frames, list profiles, run simulators and demos."""
import argparse
import os
import sys

from .core import diag, frame as F, model
from .core.errors import NAMES as ERROR_NAMES, SpotError
from .core.services import NODE, TIME, PLANS


def _services():
    """Service id -> Service for every known profile and common service."""
    from .core import plans
    from .core.node import TIME_OBJECTS
    from .profiles import registry
    out = {PLANS: model.service_of(plans),
           TIME: model.Service(TIME, "time", (1, 0), TIME_OBJECTS)}
    for name in registry.PROFILES:
        s = model.service_of(registry.load(name))
        out[s.sid] = s
    return out


def _read_frame(arg):
    if os.path.exists(arg):
        with open(arg, "rb") as f:
            data = f.read()
        try:  # a file holding hex text
            return bytes.fromhex(data.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return data
    return bytes.fromhex(arg.replace(":", " "))


def _object_note(svc, op):
    """A diag note() naming objects and showing scaled values in SI units."""
    def name(oid, value):
        row = svc.by_id.get(oid) if svc is not None and type(oid) is int else None
        if row is None:
            return None
        text = row[model.NAME]
        if type(value) is int and row[model.SCALE] and op != F.SUBSCRIBE:
            text += " = %s %s" % (model.from_wire(row, value), row[model.UNIT])
        return text

    def note(path, value):
        if op in (F.READ, F.WRITE, F.SUBSCRIBE, F.RESULT) and len(path) == 1:
            return name(path[0], value)
        if op == F.NOTIFY and len(path) == 2 and path[0] == 1:
            return name(path[1], value)
        return None
    return note


def describe(data, services=None):
    """Human-readable text of one frame: header line and body in diagnostic notation."""
    services = _services() if services is None else services
    try:
        op, sid, mid, body = F.decode(data, max_size=len(data))
    except SpotError as e:
        return "invalid frame: %s (%s)" % (ERROR_NAMES.get(e.code, e.code), e.detail)
    svc = services.get(sid)
    sname = "node" if sid == NODE else (svc.name if svc else "unknown")
    head = "SPOT v%d %s service %s (0x%02x) mid %d" % (F.VERSION, F.OP_NAMES[op], sname, sid, mid)
    if body is None:
        return head + "\n(no body)"
    if op == F.ERROR and type(body) is list and body:
        head += "  [%s]" % ERROR_NAMES.get(body[0], "?")
    if op == F.INVOKE and type(body) is list and body and type(body[0]) is int and svc is not None:
        row = svc.by_id.get(body[0])
        if row is not None:
            head += "  [%s]" % row[model.NAME]
    return head + "\n" + diag.format(body, _object_note(svc, op))


def cmd_decode(args):
    text = " ".join(args.frame)   # 12 10 00 2a as separate words, or quoted as one
    try:
        data = _read_frame(text)
    except ValueError:
        print("spot decode: %r is neither a file nor hex bytes" % text, file=sys.stderr)
        return 2
    print(describe(data))
    return 0


_PREFIXED = ("W", "Wh", "var", "VA", "varh")   # units written with k and M


def range_text(row):
    """An object's range as a person writes it: "20 to 70 Cel", ">= 0 Wh",
    "-10 to 10 MW", "up to 32 characters"; "" when it has none."""
    lo, hi, unit = row[model.LO], row[model.HI], row[model.UNIT]
    if lo is None and hi is None:
        return ""
    if row[model.TYPE] == model.TEXT:
        return "up to %d characters" % hi if hi is not None else ""
    big = max(abs(lo or 0), abs(hi or 0))
    k, prefix = 1, ""
    if unit in _PREFIXED and big >= 1e6:
        k, prefix = 1e6, "M"
    elif unit in _PREFIXED and big >= 1e4:
        k, prefix = 1e3, "k"

    def n(v):
        v = v / k
        return "%d" % v if v == int(v) else "%.6g" % v
    text = ("<= " + n(hi) if lo is None else ">= " + n(lo) if hi is None
            else "%s to %s" % (n(lo), n(hi)))
    unit = prefix + (unit if unit != "1" else "")
    return text + (" " + unit if unit else "")


def cmd_profiles(args):
    services = _services()
    for sid in sorted(services):
        s = services[sid]
        if args.name and s.name != args.name:
            continue
        print("0x%02x %s v%d.%d" % (sid, s.name, s.version[0], s.version[1]))
        for r in s.rows:
            access = "".join(c for c, bit in (("R", model.R), ("W", model.W), ("X", model.X))
                             if r[model.ACCESS] & bit)
            rng = range_text(r)
            print("  %3d %-22s %-8s %-6s %-3s %s %s" % (
                r[model.ID], r[model.NAME], model.TYPE_NAMES[r[model.TYPE]],
                r[model.UNIT], access, "M" if r[model.MANDATORY] else "O", rng))
    return 0


def _uri(text, schemes):
    """(scheme, host, port) of a URI like coap://127.0.0.1:5683, or raise ValueError."""
    from urllib.parse import urlsplit
    u = urlsplit(text)
    if u.scheme not in schemes or not u.hostname:
        raise ValueError("expected %s://HOST:PORT, got %r" % ("|".join(schemes), text))
    default = {"coap": 5683, "coaps": 5684, "mqtt": 1883, "mqtts": 8883}[u.scheme]
    return u.scheme, u.hostname, u.port or default


async def _run_fleet(fleet, args, services):
    """Run the fleet, on the network if asked (--listen / --connect)."""
    from .ports.cpython import fleet_links as L
    links, send = {}, None
    never = []
    if args.listen:
        _, host, port = _uri(args.listen, ("coap",))
        links, send = await L.serve_fleet_coap(fleet, host, port)
        for d in fleet.devices:
            print("%s coap://%s:%d" % (d.device_id, host, links[d.device_id].port), flush=True)
    elif args.connect:
        scheme, host, port = _uri(args.connect, _CONNECT_SCHEMES)
        if scheme == "coap":
            links, send = await L.serve_fleet_coap(fleet, "0.0.0.0", 0, bridge=(host, port))
        elif scheme == "coaps":
            from .ports.cpython.dtls_link import parse_psk
            identity, key = parse_psk(args.psk)
            links, send = await L.connect_fleet_coaps(fleet, host, port, identity, key)
        else:
            ssl = None
            if scheme == "mqtts":
                import ssl as _ssl
                ssl = _ssl.create_default_context(cafile=args.ca)
            links, send = await L.connect_fleet_mqtt(fleet, host, port, ssl=ssl)
        print("spot sim: %d devices connecting to %s" % (len(fleet.devices), args.connect),
              flush=True)

    def on_frames(device, frames):
        if send is not None:
            send(device, frames)
        if args.print:
            for peer, frame in frames:
                text = describe(frame, services).replace("\n", "\n    ")
                to = "" if peer is None else " -> %s" % (peer,)
                print("%s%s %s" % (device.device_id, to, text), flush=True)
    try:
        await fleet.run(tick=args.tick, duration=args.duration, on_frames=on_frames)
    finally:
        never = [link for link in links.values()
                 if getattr(link, "stats", {}).get("handshakes") == 0]
        if never:   # coaps://: say so rather than exit as if all was well
            print("spot sim: %d of %d devices never got a DTLS session (%s)"
                  % (len(never), len(links), never[0].last_error or "handshake not finished"),
                  file=sys.stderr)
        await L.close_links(links)
    return 1 if never and len(never) == len(links) else 0


_CONNECT_SCHEMES = ("coap", "coaps", "mqtt", "mqtts")


def _check_psk(args):
    """None when --connect / --psk fit together, else the complaint (coaps:// needs a PSK)."""
    scheme = _uri(args.connect, _CONNECT_SCHEMES)[0] if args.connect else None
    if scheme == "coaps":
        args.psk = args.psk or os.environ.get("SPOT_PSK")   # the environment keeps it out of ps
        if not args.psk:
            return ("coaps:// needs a pre-shared key: --psk IDENTITY:HEXKEY or SPOT_PSK in the "
                    "environment (as in the bridge's [dtls] psk)")
        from .ports.cpython.dtls_link import dtls_available, parse_psk
        parse_psk(args.psk)
        return dtls_available()
    if args.psk:
        return "--psk is only for --connect coaps://"
    return None


def cmd_sim(args):
    """Run a fleet of simulated devices, in-process or on the network."""
    import asyncio
    import time
    from .ports.cpython.fleet import Fleet, parse_profiles
    if args.count < 1 or args.speed <= 0 or args.tick <= 0 or args.telemetry < 0:
        print("spot sim: --count, --speed and --tick must be positive, --telemetry not negative",
              file=sys.stderr)
        return 2
    try:
        for uri, schemes in ((args.listen, ("coap",)), (args.connect, _CONNECT_SCHEMES)):
            if uri:
                _uri(uri, schemes)
        complaint = _check_psk(args)
        if complaint:
            print("spot sim: %s" % complaint, file=sys.stderr)
            return 2
        start = int(time.time()) if args.start is None else args.start   # real time by default
        fleet = Fleet(parse_profiles(args.profile, args.count), seed=args.seed, t0=start,
                      speed=args.speed, telemetry=args.telemetry or None,
                      # simulated time of its own: the bridge may not set it to the wall clock
                      keep_clock=args.start is not None or args.speed != 1)
    except (KeyError, ValueError) as e:
        print("spot sim: %s" % e.args[0], file=sys.stderr)
        return 2
    wall = time.monotonic()
    failed = 0
    try:
        failed = asyncio.run(_run_fleet(fleet, args, _services()))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # e.g. piped into head
        sys.stdout = open(os.devnull, "w")
    except OSError as e:
        print("spot sim: %s" % e, file=sys.stderr)
        return 1
    wall = time.monotonic() - wall
    print("spot sim: %d devices, %d device-steps, %d notifications, %.0f s simulated in %.1f s"
          " (stepping busy %.0f %%)" % (len(fleet.devices), fleet.steps, fleet.frames,
                                       fleet.t - fleet.t0, wall,
                                       100.0 * fleet.busy / wall if wall > 0 else 0.0),
          file=sys.stderr)
    return failed   # 1: no device of a coaps:// fleet ever got a session


def _bridge_config(args):
    from .cloud_bridge import config as C
    return C.load(args.config, data=args.data, http=args.http, coap=args.coap, store=args.store,
                  mqtt_url=args.mqtt, reg_plain=args.coap_plain,
                  instance=args.instance)


def cmd_bridge(args):
    """Run the bridge service until interrupted."""
    from .cloud_bridge.app import run_bridge, setup_logging
    setup_logging(args.log_level, json_lines=not args.plain_logs)
    try:
        config = _bridge_config(args)
    except (OSError, ValueError) as e:
        print("spot bridge: %s" % e, file=sys.stderr)
        return 2

    from .cloud_bridge.banner import banner_lines

    async def ready(parts):
        print("SPOT bridge running: dashboard %s/" % parts.http_url)
        print("\n".join(banner_lines(config, parts.listening)), flush=True)
    from .cloud_bridge.store import StoreError
    try:
        run_bridge(config, ready)
    except StoreError as e:
        from .cloud_bridge.app import store_problem_line
        print("spot bridge: " + store_problem_line(config, e), file=sys.stderr)
        return 1
    return 0


def cmd_demo(args):
    """The bridge with embedded defaults and one simulated device of every profile."""
    import asyncio
    from .cloud_bridge.app import setup_logging
    from .cloud_bridge.demo import demo
    setup_logging(args.log_level, json_lines=not args.plain_logs)
    try:
        config = _bridge_config(args)
        asyncio.run(demo(config, count=args.count, duration=args.duration,
                         out=lambda s: print(s, flush=True)))
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as e:
        print("spot demo: %s" % e, file=sys.stderr)
        return 1
    except Exception as e:
        from .cloud_bridge.store import StoreError
        from .cloud_bridge.app import store_problem_line
        if not isinstance(e, StoreError):
            raise
        print("spot demo: " + store_problem_line(config, e), file=sys.stderr)
        return 1
    return 0


def _bundle_args(args):
    return dict(transport=args.transport, oscore=True if args.oscore else None,
                config=args.config, main=args.main, opt=args.opt, rest=args.rest)


def cmd_bundle(args):
    """Compile the modules one profile needs to .mpy, with its config, into a directory."""
    from .ports.cpython import deploy as D
    try:
        if args.freeze and args.romfs:
            raise D.BundleError("--freeze and --romfs are two ways to hold the code: pick one")
        if args.freeze:
            files = D.freeze(args.profile, args.out, **_bundle_args(args))
        elif args.romfs:
            files = D.romfs(args.profile, args.out, args.romfs, **_bundle_args(args))
        else:
            files = D.bundle(args.profile, args.out, **_bundle_args(args))
    except D.BundleError as e:
        print("spot bundle: %s" % e, file=sys.stderr)
        return 2
    for f in files:
        print(f)
    if args.freeze:
        print("spot bundle: %d files in %s; build the firmware with FROZEN_MANIFEST=%s"
              % (len(files), args.out, os.path.join(os.path.abspath(args.out), "manifest.py")),
              file=sys.stderr)
    elif args.romfs:
        print("spot bundle: ROMFS image %s (%d bytes); put it on the board with `mpremote "
              "romfs deploy %s`, and %s with `mpremote fs cp`"
              % (args.romfs, os.path.getsize(args.romfs), args.romfs, " ".join(files)),
              file=sys.stderr)
    else:
        print("spot bundle: %d files, %d bytes of .mpy in %s"
              % (len(files), D.bundle_size(args.out, files), args.out), file=sys.stderr)
    return 0


def cmd_deploy(args):
    """Bundle for the board's .mpy format and copy it to the board with mpremote."""
    from .ports.cpython import deploy as D
    try:
        cmd = D.deploy(args.profile, args.device, out=args.out, **_bundle_args(args))
    except (D.BundleError, OSError) as e:
        print("spot deploy: %s" % e, file=sys.stderr)
        return 1
    print("spot deploy: %s" % " ".join(cmd[:3] + ["..."] + cmd[-2:]), file=sys.stderr)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="spot", description="SPOT smart-grid protocol runtime")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode", help="pretty-print a SPOT frame given as hex or a file")
    d.add_argument("frame", nargs="+",
                   help="hex bytes (12 10 00 2a ..., quoted or not) or a file (binary or hex)")
    d.set_defaults(func=cmd_decode)
    pr = sub.add_parser("profiles", help="list profiles and their objects")
    pr.add_argument("name", nargs="?", help="only this profile")
    pr.set_defaults(func=cmd_profiles)
    sm = sub.add_parser("sim", help="run simulated devices (a fleet of one profile, or all)")
    sm.add_argument("profile", help="profile name (see `spot profiles`), or all for one of each device")
    sm.add_argument("--count", type=int, default=1, help="devices of the profile (default 1)")
    sm.add_argument("--speed", type=float, default=1.0,
                    help="simulated seconds per wall-clock second (default 1)")
    sm.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sm.add_argument("--duration", type=float, default=None,
                    help="wall-clock seconds to run (default: until interrupted)")
    sm.add_argument("--tick", type=float, default=1.0,
                    help="wall-clock seconds between steps (default 1)")
    sm.add_argument("--telemetry", type=int, default=60,
                    help="simulated seconds between telemetry notifications (0: none; default 60)")
    sm.add_argument("--start", type=int, default=None,
                    help="simulated start, Unix seconds (default: now, so the simulated clock "
                         "runs on real time at --speed 1; with --start or another --speed the "
                         "devices keep their simulated clock and refuse the bridge's)")
    sm.add_argument("--print", action="store_true", help="print every notification decoded")
    sm.add_argument("--connect", metavar="URI",
                    help="register with a bridge (coap://HOST:PORT, coaps://HOST:PORT with --psk)"
                         " or a broker (mqtt://, mqtts://)")
    sm.add_argument("--psk", metavar="IDENTITY:HEXKEY",
                    help="DTLS pre-shared key for coaps://, shared by the fleet (the bridge's"
                         " [dtls] psk = {IDENTITY = \"HEXKEY\"}); default: $SPOT_PSK")
    sm.add_argument("--ca", help="CA file for mqtts://")
    sm.add_argument("--listen", metavar="coap://HOST:PORT",
                    help="serve the devices over CoAP, one per port from PORT on")
    sm.set_defaults(func=cmd_sim)
    for name, func, text in (("bridge", cmd_bridge, "run the bridge service"),
                             ("demo", cmd_demo, "run the bridge with a simulated fleet")):
        b = sub.add_parser(name, help=text)
        b.add_argument("--config", help="TOML configuration file")
        b.add_argument("--data", help="data directory (default spot-data)")
        b.add_argument("--http", metavar="HOST:PORT", help="API and dashboard (default 127.0.0.1:8080)")
        b.add_argument("--coap", metavar="HOST:PORT", help="CoAP for devices (default 127.0.0.1:5683)")
        b.add_argument("--coap-plain", choices=("off", "loopback", "open"),
                       help="who may register over plain CoAP (default loopback; see "
                            "docs/security-transports.md)")
        b.add_argument("--store", metavar="URL", help="sqlite:///path or postgresql://...")
        b.add_argument("--mqtt", metavar="URL", help="MQTT broker, mqtt://HOST:PORT")
        b.add_argument("--instance", metavar="ID",
                       help="this instance's id, unique among those sharing a store (default bridge-1)")
        b.add_argument("--log-level", default="info", help="debug, info, warning (default info)")
        b.add_argument("--plain-logs", action="store_true", help="text logs instead of JSON lines")
        if name == "demo":
            b.add_argument("--count", type=int, default=1, help="devices per profile (default 1)")
            b.add_argument("--duration", type=float, default=None,
                           help="seconds to run (default: until interrupted)")
        b.set_defaults(func=func)
    for name, func, text in (("bundle", cmd_bundle, "compile one profile's device runtime to .mpy"),
                             ("deploy", cmd_deploy, "bundle and copy to a MicroPython board")):
        b = sub.add_parser(name, help=text)
        b.add_argument("--profile", required=True, help="profile the device serves (heat_pump, meter, ...)")
        if name == "bundle":
            b.add_argument("--out", required=True, help="directory to write the bundle to")
            b.add_argument("--freeze", action="store_true",
                           help="instead of .mpy files, write the sources and a manifest.py to "
                                "freeze them into a firmware build (code in flash, not heap)")
            b.add_argument("--romfs", metavar="FILE",
                           help="write the .mpy files as a ROMFS image to FILE (for `mpremote "
                                "romfs deploy`; run from flash), only main.py and spot.json to --out")
        else:
            b.add_argument("--device", required=True, help="serial port of the board (mpremote connect)")
            b.add_argument("--out", help="also keep the bundle in this directory")
        b.add_argument("--config", help="device config (JSON) copied as spot.json; sets transport and OSCORE")
        b.add_argument("--transport", choices=("coap", "mqtt"), help="default: the config's bridge, else coap")
        b.add_argument("--oscore", action="store_true", help="include OSCORE (default: when the config has keys)")
        b.add_argument("--rest", action="store_true",
                       help="include the CoAP REST view for generic CoAP clients (default: the bus /s only)")
        b.add_argument("--main", help="firmware script installed as main.py (default: a minimal one)")
        b.add_argument("--opt", type=int, default=3, choices=(0, 1, 2, 3),
                       help="mpy-cross optimisation; 3 drops line numbers (default 3)")
        b.set_defaults(func=func)
    from .cloud_bridge.iec61850.scl_cli import add_parser as add_iec61850
    add_iec61850(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
