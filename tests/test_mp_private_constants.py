"""Device-side modules copy the numbers they use from the modules that define them
(core.model, core.errors, core.services, core.coap, core.frame, ...) as private
MicroPython constants (`_NAME = const(n)`): mpy-cross folds them into the code, so on
a board they take no slot in the module's globals, import nothing and intern no name
(docs/benchmarks.md, "MicroPython footprint on the real interpreter"). A copy is
`_` + the defining module's public name; this checks that every copy still has the
number of its original (on CPython, where the copies are module attributes).
Profiles' row constants are checked by test_mp_profile_tables.py. A private constant
is not stored on a board, so no other module may read one (the last test)."""
import importlib

import pytest

# module holding copies -> the modules it copies from
COPIES = {
    "core.plans": ("core.model", "core.errors", "core.services", "core.frame",
                   "core.plans_numbers"),
    "core.node": ("core.errors", "core.services", "core.model", "core.frame", "core.plans",
                  "core.node_numbers"),
    "core.coap_binding": ("core.coap", "core.coap_client", "core.errors", "core.frame",
                          "core.services"),
    "core.coap": ("core.coap_numbers",),
    "core.coap_client": ("core.coap", "core.coap_numbers"),
    "core.coap_server": ("core.coap", "core.coap_client"),
    "core.coap_endpoint": ("core.coap",),
    "core.coap_observe": ("core.coap", "core.frame"),
    "core.coap_blocks": ("core.coap",),
    "core.frame": ("core.errors", "core.frame_numbers"),
    "core.mqtt_binding": ("core.frame", "core.errors", "core.model", "core.secure_frame"),
    "core.mqtt": ("core.mqtt_numbers",),
    "core.mqtt_client": ("core.mqtt_numbers",),
    "core.mqtt_broker": ("core.mqtt_numbers",),
    "core.pairing": ("core.model", "core.frame", "core.errors"),
    "core.roster": ("core.frame",),
    "core.model": ("core.errors", "core.model_numbers"),
    "core.subscriptions": ("core.errors", "core.subscriptions_numbers"),
    "ports.micropython.device": ("core.model", "core.services", "core.frame",
                                 "ports.micropython.device_oscore"),
    "ports.micropython.hw": ("core.model",),
}
# a copy whose name differs from its original's: (module, copy) -> (module, original)
RENAMED = {
    ("core.plans", "_TIME_SID"): ("core.services", "TIME"),
    ("core.node", "_TIME_TYPE"): ("core.model", "TIME"),
    ("core.node", "_RW"): ("core.model", "RW"),
    ("core.node", "_M"): ("core.model", "M"),
    ("core.node", "_COMM_TIMEOUT"): ("core.plans", "_COMM_TIMEOUT"),   # private there too
}


def module(name):
    return importlib.import_module("spot." + name)


def copies(name):
    mod = module(name)
    for attr, value in sorted(vars(mod).items()):
        if attr.startswith("_") and not attr.startswith("__") and type(value) is int:
            yield attr, value


@pytest.mark.parametrize("name", sorted(COPIES))
def test_a_private_copy_has_the_number_of_its_original(name):
    checked = 0
    for attr, value in copies(name):
        if (name, attr) in RENAMED:
            src, original = RENAMED[(name, attr)]
            assert getattr(module(src), original) == value, (attr, src, original)
            checked += 1
            continue
        for src in COPIES[name]:
            if hasattr(module(src), attr[1:]):
                assert getattr(module(src), attr[1:]) == value, (attr, src)
                checked += 1
                break
    assert checked, "%s copies no number" % name


def test_a_profiles_service_id_is_the_one_core_services_allocates():
    from spot.core import services
    from spot.profiles import registry
    for name in sorted(registry.PROFILES) + ["diagnostics"]:
        mod = importlib.import_module("spot.profiles." + name)
        assert mod.SERVICE == getattr(services, name.upper()), name


# modules a board loads only with an optional part of a bundle (the CoAP REST view,
# OSCORE): they may read the numbers by name, importing core/*_numbers when loaded
OPTIONAL = ("spot.core.coap_rest", "spot.core.coap_oscore")


def _reads_by_name(path, numbers):
    """(line, text) of each place in the source at path that reads one of `numbers`
    ({module: names}) by name: `from .coap import GET`, `coap.GET` after `from . import
    coap`."""
    import ast
    tree = ast.parse(open(path).read())
    aliases = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = (node.module or "").split(".")[-1]
            for a in node.names:
                if mod in numbers and a.name in numbers[mod]:
                    found.append((node.lineno, "from %s import %s" % (mod, a.name)))
                if a.name in numbers:
                    aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr in numbers[aliases[node.value.id]]):
            found.append((node.lineno, "%s.%s" % (node.value.id, node.attr)))
    return found


def test_no_module_of_a_board_reads_numbers_by_name():
    # on a board such a read of CoAP's, the model's, the frame's, the error codes', the
    # node's, the plans' or the observe attributes' numbers imports core/coap_numbers,
    # model_numbers, frame_numbers, errors_numbers, node_numbers, plans_numbers or
    # subscriptions_numbers (their module __getattr__): heap the device pays for at run
    # time, e.g. on its first 4.01
    import mp_real
    numbers = {m: {k for k, v in vars(module("core.%s_numbers" % m)).items()
                   if k.isupper() and type(v) in (int, tuple)}
               for m in ("coap", "model", "frame", "errors", "node", "plans", "subscriptions")}
    reads = {}
    for name, path in mp_real.frozen_modules().items():
        if name.endswith("_numbers") or name in OPTIONAL:
            continue
        found = _reads_by_name(path, numbers)
        if found:
            reads[name] = found
    assert reads == {}


def _board_sources():
    """{module name: source path} of every module that runs on a board (core/, profiles/,
    ports/micropython/)."""
    import os
    from spot.ports.cpython import deploy as D
    found = {}
    for top in ("core", "profiles", os.path.join("ports", "micropython")):
        for dirpath, _dirs, files in os.walk(os.path.join(D.REPO, top)):
            for f in files:
                if f.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, f), D.REPO)[:-3].split(os.sep)
                    name = ".".join(["spot"] + [p for p in rel if p != "__init__"])
                    found[name] = os.path.join(dirpath, f)
    return found


def _private_constants(path):
    """The names the module at path assigns as `_NAME = const(n)`."""
    import ast
    tree = ast.parse(open(path, encoding="utf-8").read())
    return {n.targets[0].id for n in tree.body
            if isinstance(n, ast.Assign) and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name) and n.targets[0].id.startswith("_")
            and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name)
            and n.value.func.id == "const"}


def test_no_module_reads_another_modules_private_constant():
    # a board stores `_NAME = const(n)` in no module's globals: `from .plans import
    # _COMM_TIMEOUT` or `plans._COMM_TIMEOUT` works on CPython and fails on MicroPython
    sources = _board_sources()
    private = {n.rpartition(".")[2]: _private_constants(p) for n, p in sources.items()}
    assert len(private) == len(sources)      # short names are unique: _reads_by_name's key
    reads = {}
    for name, path in sources.items():
        found = _reads_by_name(path, private)
        if found:
            reads[name] = found
    assert reads == {}
