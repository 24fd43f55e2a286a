"""The IEC 61850 model of the fleet: one data model that the MMS server,
the SCL writer and the XMPP (IEC 61850-8-2) plugin all serve. Pure data and
functions, no protocol library.

Naming. The bridge is one gateway IED (`ied_name`, default "SPOT"). Each
device is one logical device (LD) whose instance is derived from the device
id (`ld_inst`): a valid IEC 61850 identifier, the id itself when it is one,
else its sanitised form plus "_" and 6 hex digits of its SHA-1; collisions
get a longer hash, deterministically (devices are taken in id order). Every
LD has LLN0 (Beh, Health, NamPlt) and LPHD1 (PhyNam, PhyHealth, Proxy), then
the logical nodes of each profile the device serves (mapping.py: MMXU,
MMTR, DRCC, DGEN, ZBAT, DESE, ...; instances numbered per class in the LD).
MMS names (IEC 61850-8-1): domain = IED name + LD inst; item =
LN$FC$DO$DA (sub-DOs and sub-attributes joined by $ too).

API (all objects are plain Python; read-only after build):

    build_model(devices, ied_name="SPOT", devices_filter=None) -> Model
        devices: store Device records (id, services, presence, groups).
    Model.ied_name, Model.lds {domain: LD}, Model.ld(domain) -> LD (KeyError)
    LD.inst, LD.domain, LD.device (SPOT device id), LD.lns {name: LN},
        LD.datasets {name: [(ln, fc, do)]} (in LLN0), LD.rcbs [Rcb]
    LN.name ("MMXU1"), LN.lnclass, LN.inst, LN.desc, LN.local, LN.dos {name: DO}
    DO.name, DO.cdc, DO.cdc_name, DO.local, DO.point (Point or None),
        DO.ctl_model (cdc.* control model or None), DO.children [DA | DO]
    DA.name, DA.btype (str, or None for a structure), DA.fc, DA.trg, DA.role,
        DA.point, DA.children [DA]
    Point: the SPOT object a value comes from / goes to: sid, oid, name,
        type, unit, access, lo, hi, scale, row (the profile row),
        writable, invocable
    leaves(ln) -> [(item, fc, DA, DO)] every leaf attribute of an LN
    name_list(ld) -> sorted MMS names of the domain (LNs, LN$FC, ... leaves,
        and the data sets as LLN0$name in dataset_names(ld))
    find(model, domain, item) -> Node(ld, ln, fc, path, obj) or KeyError
    type_of(obj, fc) -> type description {"name": .., "btype"| "members"}
    values(ld, latest, presence, now) -> {item: value} of every leaf:
        latest is the store's {(sid, oid): (wire value, t)}; values are
        bool, int, float, str, Quality (int mask, see Q_*) and Timestamp
        (float Unix seconds); Dbpos is an int 0..3.
    FSCH1 (when the device takes plans): a schedule of one set-point
        (LN.target) whose DOs hold schedule parameters (DO.param); Acsi keeps
        them and SchdEnaReq pushes them as one SPOT plan.
    to_spot(point, value) -> SPOT wire value (SpotError when out of range /
        of the wrong type), from_spot(point, da_btype, wire) -> 61850 value.
The operations a client asks for (read, write, operate with the device's
real result) are in acsi.py, on top of this module.
"""
import hashlib
import math
import re

from ...core import model as M
from ...core.errors import SpotError, WRONG_TYPE
from ...profiles import registry
from . import cdc as C
from ...core.services import PLANS
from .mapping import LN_CLASSES, SCHEDULE_ENTRIES, SCHEDULE_TARGETS, entries

# quality: bit i of the mask is bit i of the IEC 61850-8-1 bit-string (0 = first)
Q_GOOD = 0
Q_INVALID = 1 << 1            # validity 01
Q_QUESTIONABLE = 3            # validity 11
Q_OLD_DATA = 1 << 7
Q_BITS = 13

# Dbpos
DBPOS_INTERMEDIATE, DBPOS_OFF, DBPOS_ON, DBPOS_BAD = 0, 1, 2, 3

SBO_TIMEOUT_MS = 30000
MAX_NAME = 64                 # IEC 61850-7-2 Ed2 / 8-1: LD name and MMS identifier
_IDENT = re.compile(r"[A-Za-z][0-9A-Za-z_]*\Z")


def quality_bits(q):
    """The 13 bits of a quality mask, in bit-string order."""
    return [bool(q >> i & 1) for i in range(Q_BITS)]


class Point:
    """A SPOT object: where a 61850 value comes from and where a control goes."""
    __slots__ = ("sid", "oid", "name", "type", "unit", "access", "lo", "hi", "scale", "row")

    def __init__(self, sid, row, profile):
        self.sid, self.oid, self.row = sid, row[M.ID], row
        self.name = "%s.%s" % (profile, row[M.NAME])
        self.type, self.unit, self.access = row[M.TYPE], row[M.UNIT], row[M.ACCESS]
        self.lo, self.hi, self.scale = row[M.LO], row[M.HI], row[M.SCALE]

    @property
    def writable(self):
        return bool(self.access & M.W)

    @property
    def invocable(self):
        return bool(self.access & M.X)

    def __repr__(self):
        return "Point(%s %d/%d)" % (self.name, self.sid, self.oid)


class DA:
    __slots__ = ("name", "btype", "fc", "trg", "role", "point", "children")

    def __init__(self, name, btype, fc, trg, role, point, children):
        self.name, self.btype, self.fc, self.trg = name, btype, fc, trg
        self.role, self.point, self.children = role, point, children


class DO:
    __slots__ = ("name", "cdc", "local", "point", "ctl_model", "children", "desc", "param")

    def __init__(self, name, cdc, local, point, ctl_model, children, desc="", param=None):
        self.name, self.cdc, self.local, self.point = name, cdc, local, point
        self.ctl_model, self.children, self.desc = ctl_model, children, desc
        self.param = param      # FSCH: the schedule parameter this DO holds (SCHEDULE_PARAMS)

    @property
    def cdc_name(self):
        return C.CDC_NAME.get(self.cdc, self.cdc)

    @property
    def controllable(self):
        return self.cdc in C.CONTROLLABLE

    def fcs(self):
        """The FCs this DO has attributes in, in first-seen order."""
        out = []
        for c in self.children:
            for fc in (c.fcs() if isinstance(c, DO) else [c.fc]):
                if fc not in out:
                    out.append(fc)
        return out


class LN:
    __slots__ = ("name", "lnclass", "inst", "desc", "local", "dos", "target")

    def __init__(self, lnclass, inst, desc):
        self.lnclass, self.inst, self.desc = lnclass, inst, desc
        self.name = lnclass + inst
        self.local = LN_CLASSES.get(lnclass, ("", "local"))[1] == "local"
        self.dos = {}
        self.target = None      # FSCH: the Point its schedule drives


class Rcb:
    __slots__ = ("name", "buffered", "dataset", "rpt_id", "max")

    def __init__(self, name, buffered, dataset, rpt_id, max_=4):
        self.name, self.buffered, self.dataset = name, buffered, dataset
        self.rpt_id, self.max = rpt_id, max_


class LD:
    """One device's logical device. Its lns and datasets are those of its shape
    (the tuple of its services), shared by every LD of that shape: read-only."""
    __slots__ = ("inst", "domain", "device", "services", "lns", "datasets", "rcbs")

    def __init__(self, ied_name, inst, device, services):
        self.inst, self.device, self.services = inst, device, services
        self.domain = ied_name + inst
        self.lns, self.datasets, self.rcbs = {}, {}, []

    @property
    def shape(self):
        """What decides the LD's logical nodes: its services."""
        return tuple(self.services)


class Model:
    def __init__(self, ied_name):
        self.ied_name = ied_name
        self.lds = {}           # domain -> LD
        self.by_device = {}     # device id -> LD

    def ld(self, domain):
        return self.lds[domain]


class Node:
    """What a (domain, item) names: an LN, an FC of it, a DO / sub-DO or a DA."""
    __slots__ = ("ld", "ln", "fc", "path", "obj")

    def __init__(self, ld, ln, fc, path, obj):
        self.ld, self.ln, self.fc, self.path, self.obj = ld, ln, fc, path, obj


# ------------------------------------------------------------------ naming

def check_ied_name(name):
    if type(name) is not str or not _IDENT.match(name) or len(name) > 32:
        raise ValueError("IED name must be a letter then letters, digits or _ (at most 32): %r"
                         % (name,))
    return name


def ld_inst(device_id, ied_name="SPOT", taken=()):
    """The LD instance of a device id: the id if it is a valid identifier that fits,
    else sanitised + "_" + a hash; never one in `taken`."""
    room = MAX_NAME - len(ied_name)
    if _IDENT.match(device_id) and len(device_id) <= room and device_id not in taken:
        return device_id
    base = re.sub(r"[^0-9A-Za-z_]", "_", device_id)
    if not base[:1].isalpha():
        base = "D" + base
    digest = hashlib.sha1(device_id.encode("utf-8")).hexdigest()
    for n in range(6, 41, 2):
        inst = base[:room - n - 1] + "_" + digest[:n]
        if inst not in taken:
            return inst
    raise ValueError("no LD instance for %r" % device_id)


# ------------------------------------------------------------------ building

def _das(template, point, fc=None):
    out = []
    for name, btype, dfc, trg, role in template:
        dfc = dfc or fc
        if isinstance(btype, tuple):
            out.append(DA(name, None, dfc, trg, role, None, _das(btype, point, dfc)))
        else:
            out.append(DA(name, btype, dfc, trg, role, point if role in ("v", "c") else None, []))
    return out


def _ctl_model(cdc_name, point):
    if cdc_name not in C.CONTROLLABLE:
        return None
    if point is not None and not (point.writable or point.invocable):
        return C.STATUS_ONLY
    return C.DIRECT_NORMAL if cdc_name == "APC" else C.SBO_ENHANCED


def _new_do(name, cdc_name, point, local, desc=""):
    return DO(name, cdc_name, local, point, _ctl_model(cdc_name, point),
              _das(C.CDCS[cdc_name], point), desc)


def _ln(ld, lnclass, desc):
    n = 1 + sum(1 for ln in ld.lns.values() if ln.lnclass == lnclass)
    ln = LN(lnclass, str(n), desc)
    ld.lns[ln.name] = ln
    return ln


def _base_lns(ld):
    lln0 = LN("LLN0", "", "logical node zero")
    lln0.dos["Beh"] = _new_do("Beh", "ENS_BEH", None, False)
    lln0.dos["Health"] = _new_do("Health", "ENS_HEALTH", None, False)
    lln0.dos["NamPlt"] = _new_do("NamPlt", "LPL", None, False)
    ld.lns["LLN0"] = lln0
    lphd = LN("LPHD", "1", "physical device")
    lphd.dos["PhyNam"] = _new_do("PhyNam", "DPL", None, False)
    lphd.dos["PhyHealth"] = _new_do("PhyHealth", "ENS_HEALTH", None, False)
    lphd.dos["Proxy"] = _new_do("Proxy", "SPS", None, False)
    ld.lns["LPHD1"] = lphd


def _add_profile(ld, sid):
    prof = registry.by_service(sid)
    if prof is None:
        return
    rows = {r[M.ID]: r for r in prof.OBJECTS}
    lns = {"LPHD": ld.lns["LPHD1"]}
    for oid, (key, do_name, sub, cdc_name, local) in sorted(entries(sid).items()):
        row = rows.get(oid)
        if row is None:
            continue
        point = Point(sid, row, prof.NAME)
        ln = lns.get(key)
        if ln is None:
            lnclass = key.split("#")[0]
            ln = lns[key] = _ln(ld, lnclass, "%s: %s" % (prof.NAME, LN_CLASSES[lnclass][0]))
        desc = "%s [%s]" % (point.name, point.unit) if point.unit else point.name
        if cdc_name == "DPL":        # one attribute of the name plate
            for da in ln.dos[do_name].children:
                if da.name == sub:
                    da.point = point
            continue
        if sub is not None:          # a phase of a WYE
            wye = ln.dos.get(do_name)
            if wye is None:
                wye = ln.dos[do_name] = DO(do_name, "WYE", local, None, None, [], point.name)
            wye.children.append(_new_do(sub, cdc_name, point, local, desc))
            continue
        ln.dos[do_name] = _new_do(do_name, cdc_name, point, local, desc)


# FSCH data objects: (name, CDC, parameter, local extension?)
SCHEDULE_DOS = ((("SchdSt", "INS", "st", False), ("ValMV", "MV", "mv", False),
                 ("SchdPrio", "ING", "prio", False), ("StrTm", "ING", "start", True),
                 ("SchdIntv", "ING", "intv", False), ("NumEntr", "ING", "num", False))
                + tuple(("ValASG%03d" % i, "ASG", "val%d" % i, False)
                        for i in range(1, SCHEDULE_ENTRIES + 1))
                + (("SchdEnaReq", "SPC", "ena", False), ("SchdDsaReq", "SPC", "dsa", False)))
SCHEDULE_SETTINGS = ("prio", "start", "intv", "num") + tuple(
    "val%d" % i for i in range(1, SCHEDULE_ENTRIES + 1))


def _add_schedule(ld):
    """FSCH1 on the LD's first schedulable set-point, when the device takes plans."""
    if PLANS not in ld.services:
        return
    for sid in ld.services:
        oid = SCHEDULE_TARGETS.get(sid)
        prof = registry.by_service(sid) if oid else None
        if prof is None:
            continue
        row = next(r for r in prof.OBJECTS if r[M.ID] == oid)
        target = Point(sid, row, prof.NAME)
        ln = _ln(ld, "FSCH", "schedule of %s: a SPOT plan (StrTm in Unix seconds, SchdIntv "
                 "in seconds, values in %s)" % (target.name, target.unit))
        ln.target = target
        for name, cdc_name, param, local in SCHEDULE_DOS:
            do = DO(name, cdc_name, local, None, None, _das(C.CDCS[cdc_name], None),
                    "%s of the plan for %s" % (param, target.name), param)
            if cdc_name in C.CONTROLLABLE:
                do.ctl_model = C.DIRECT_NORMAL
            ln.dos[name] = do
        return


def _datasets(ld):
    """A fixed data set per LN (its ST and MX data objects) and one of them all,
    with an unbuffered and a buffered report control block on the latter."""
    every = []
    ld.datasets = {}
    for ln in ld.lns.values():
        members = [(ln.name, fc, do.name) for do in ln.dos.values()
                   for fc in do.fcs() if fc in ("ST", "MX")]
        if members and ln.name != "LLN0":
            ld.datasets[ln.name] = members
        every.extend(members)
    ld.datasets["All"] = every


def _rcbs(ld):
    ld.rcbs = [Rcb("urcbAll", False, "All", ld.domain + "/LLN0$RP$urcbAll"),
               Rcb("brcbAll", True, "All", ld.domain + "/LLN0$BR$brcbAll")]


def _shaped(ld, shapes):
    """Give ld the logical nodes and data sets of its shape, built once per shape
    (shapes: {shape: (lns, datasets)}) and shared: 10 000 batteries hold one set."""
    got = shapes.get(ld.shape)
    if got is None:
        _base_lns(ld)
        for sid in ld.services:
            _add_profile(ld, sid)
        _add_schedule(ld)
        _datasets(ld)
        got = shapes[ld.shape] = (ld.lns, ld.datasets)
    ld.lns, ld.datasets = got
    _rcbs(ld)


def build_model(devices, ied_name="SPOT", devices_filter=None):
    """The Model of these devices (store Device records), in device id order.
    devices_filter(device) -> bool keeps only some. LDs of the same services
    share their (read-only) logical nodes and data sets."""
    check_ied_name(ied_name)
    model = Model(ied_name)
    taken = set()
    shapes = {}
    for d in sorted(devices, key=lambda d: d.id):
        if devices_filter is not None and not devices_filter(d):
            continue
        inst = ld_inst(d.id, ied_name, taken)
        taken.add(inst)
        sids = sorted({s[0] for s in d.services if isinstance(s, (list, tuple)) and s})
        ld = LD(ied_name, inst, d.id, sids)
        _shaped(ld, shapes)
        model.lds[ld.domain] = ld
        model.by_device[d.id] = ld
    return model


# ------------------------------------------------------------------ walking

def _walk(children, fc, prefix):
    """(path, DA or sub-DO) of every node under children in FC fc, parents first."""
    for c in children:
        if isinstance(c, DO):
            if _has_fc(c, fc):
                yield prefix + c.name, c
                yield from _walk(c.children, fc, prefix + c.name + "$")
        elif c.fc == fc:
            yield prefix + c.name, c
            if c.children:
                yield from _walk(c.children, fc, prefix + c.name + "$")


def ln_fcs(ln):
    """The FCs of an LN in the order MMS servers lay them out (MX, ST, CO, CF, DC, SP, ...)."""
    present = {fc for do in ln.dos.values() for fc in do.fcs()}
    order = ("MX", "ST", "CO", "CF", "DC", "SP", "SG", "SE", "EX")
    return [fc for fc in order if fc in present]


def leaves(ln):
    """[(item, fc, DA, DO)] of every primitive attribute of an LN, in MMS order."""
    out = []
    for fc in ln_fcs(ln):
        for do in ln.dos.values():
            for path, da in _walk(do.children, fc, "%s$%s$%s$" % (ln.name, fc, do.name)):
                if isinstance(da, DA) and da.btype is not None:
                    out.append((path, fc, da, do))
    return out


def _has_fc(obj, fc):
    return any(c.fc == fc if isinstance(c, DA) else _has_fc(c, fc) for c in obj.children)


def name_list(ld):
    """Every MMS named variable of the LD's domain, sorted (GetNameList)."""
    names = []
    for ln in ld.lns.values():
        names.append(ln.name)
        for fc in ln_fcs(ln):
            names.append("%s$%s" % (ln.name, fc))
            for do in ln.dos.values():
                if _has_fc(do, fc):
                    base = "%s$%s$%s" % (ln.name, fc, do.name)
                    names.append(base)
                    names.extend(base + "$" + p for p, _ in _walk(do.children, fc, ""))
    return sorted(names)


def dataset_names(ld):
    return sorted("LLN0$" + n for n in ld.datasets)


def find(model, domain, item):
    """The Node a domain and item name; KeyError when there is none."""
    ld = model.lds[domain]
    parts = item.split("$")
    ln = ld.lns[parts[0]]
    if len(parts) == 1:
        return Node(ld, ln, None, [], ln)
    fc = parts[1]
    if fc not in ln_fcs(ln):
        raise KeyError(item)
    if len(parts) == 2:
        return Node(ld, ln, fc, [], ln)
    obj = ln.dos[parts[2]]
    if not _has_fc(obj, fc):
        raise KeyError(item)
    for name in parts[3:]:
        obj = next((c for c in obj.children if c.name == name
                    and (isinstance(c, DO) and _has_fc(c, fc) or isinstance(c, DA) and c.fc == fc)),
                   None)
        if obj is None:
            raise KeyError(item)
    return Node(ld, ln, fc, parts[2:], obj)


def type_of(obj, fc=None):
    """A description of the MMS type of an LN (all FCs or one), DO or DA, for
    GetDataDefinition / GetVariableAccessAttributes."""
    if isinstance(obj, DA):
        if obj.btype is not None:
            return {"name": obj.name, "btype": obj.btype}
        return {"name": obj.name, "members": [type_of(c) for c in obj.children]}
    if isinstance(obj, DO):
        members = [type_of(c, fc) for c in obj.children
                   if (isinstance(c, DO) and _has_fc(c, fc)) or (isinstance(c, DA) and c.fc == fc)]
        return {"name": obj.name, "members": members}
    fcs = ln_fcs(obj) if fc is None else [fc]
    fc_types = [{"name": f, "members": [type_of(do, f) for do in obj.dos.values()
                                        if _has_fc(do, f)]} for f in fcs]
    return fc_types[0] if fc is not None else {"name": obj.name, "members": fc_types}


# ------------------------------------------------------------------ values

def default_value(btype):
    if btype == "BOOLEAN":
        return False
    if btype == "FLOAT32":
        return 0.0
    if btype in ("Quality",):
        return Q_INVALID
    if btype == "Timestamp":
        return 0.0
    if btype.startswith("VisString") or btype.startswith("Octet"):
        return "" if btype.startswith("Vis") else b""
    if btype == "Check":
        return 0
    return 0


def from_spot(point, btype, wire):
    """The 61850 value of a SPOT wire value (for a DA of basic type btype)."""
    t = point.type
    if t == M.ALARM:
        active = type(wire) is list and len(wire) == 4 and wire[3] is True
        if btype == "BOOLEAN":
            return active
        return int(wire[1]) if active else 0
    if btype == "Dbpos":
        return DBPOS_ON if wire is True else DBPOS_OFF if wire is False else DBPOS_BAD
    if btype == "BOOLEAN":
        return bool(wire)
    if btype.startswith("VisString"):
        return wire if type(wire) is str else str(wire)
    if type(wire) not in (int, float) or type(wire) is bool:
        raise TypeError("not a number: %r" % (wire,))
    si = M.from_wire(point.row, wire)
    if btype == "FLOAT32":
        return float(si)
    return int(round(si))


def to_spot(point, value):
    """The checked SPOT wire value of a 61850 value for point (SpotError if it does not fit)."""
    t = point.type
    if t == M.NONE:
        return None
    if t == M.BINARY:
        if type(value) is not bool:
            raise SpotError(WRONG_TYPE, point.oid)
        wire = value
    elif t == M.TEXT:
        if type(value) is not str:
            raise SpotError(WRONG_TYPE, point.oid)
        wire = value
    elif t in (M.ANALOG, M.COUNTER, M.ENUM, M.TIME):
        if type(value) not in (int, float) or not math.isfinite(value):
            raise SpotError(WRONG_TYPE, point.oid)
        if t in (M.ENUM, M.TIME, M.COUNTER) and type(value) is float:
            if not value.is_integer():
                raise SpotError(WRONG_TYPE, point.oid)
            value = int(value)
        wire = M.to_wire(point.row, value)
    else:
        raise SpotError(WRONG_TYPE, point.oid)
    M.check(point.row, wire)
    return wire


def point_quality(presence, have_value):
    if presence == "offline":
        return Q_INVALID | Q_OLD_DATA
    if not have_value:
        return Q_INVALID
    if presence == "sleeping":
        return Q_QUESTIONABLE | Q_OLD_DATA
    return Q_GOOD


def health(presence):
    return {"online": 1, "sleeping": 2}.get(presence, 3)


def _do_values(ld, ln, do, latest, presence, now, out, prefix_of, schedule=None):
    """Fill out with the leaves of one DO (q and t follow its point)."""
    got = latest.get((do.point.sid, do.point.oid)) if do.point is not None else None
    for fc in do.fcs():
        for path, da in _walk(do.children, fc, prefix_of(fc)):
            if not isinstance(da, DA) or da.btype is None:
                continue
            if do.param is not None and da.role == "v":
                v = (schedule or {}).get(do.param)
                out[path] = default_value(da.btype) if v is None else (
                    float(v) if da.btype == "FLOAT32" else int(v))
                continue
            out[path] = _leaf_value(ld, ln, do, da, got, presence, now)


def _leaf_value(ld, ln, do, da, got, presence, now):
    name, btype = da.name, da.btype
    if da.role == "v" and da.point is not None:
        pgot = got if da.point is do.point else None
        if pgot is not None:
            try:
                return from_spot(da.point, btype, pgot[0])
            except (TypeError, ValueError, IndexError, SpotError):
                pass
        return default_value(btype)
    if da.role == "q":
        if do.point is None:   # the gateway's own statement (Beh, Health, Proxy): valid
            return Q_GOOD
        return point_quality(presence, got is not None)
    if da.role == "t":
        return float(got[1]) if got is not None else float(now if do.point is None else 0)
    if name == "ctlModel":
        return do.ctl_model
    if name == "sboTimeout":
        return SBO_TIMEOUT_MS
    if do.name in ("Beh",) and name == "stVal":
        return 1
    if do.cdc == "ENS_HEALTH" and name == "stVal":
        return health(presence)
    if do.name == "Proxy" and name == "stVal":
        return True
    if do.cdc == "LPL":
        return {"vendor": "SPOT", "swRev": "1", "d": "SPOT device %s" % ld.device,
                "configRev": "1", "ldNs": "IEC 61850-7-4:2007B"}.get(name, "")
    return default_value(btype)


def values(ld, latest, presence, now, schedule=None):
    """{item: value} of every leaf of the LD, from the store's latest values
    {(sid, oid): (wire, t)} and the device's presence; schedule is the FSCH's
    {parameter: value} (SCHEDULE_PARAMS: st, mv, prio, start, intv, num, val1..)."""
    out = {}
    for ln in ld.lns.values():
        for do in ln.dos.values():
            if do.cdc == "WYE":
                for sub in do.children:
                    _do_values(ld, ln, sub, latest, presence, now, out,
                               lambda fc, d=do, s=sub: "%s$%s$%s$%s$" % (ln.name, fc, d.name, s.name))
                continue
            if do.cdc == "DPL":  # each attribute has its own point
                for da in do.children:
                    got = latest.get((da.point.sid, da.point.oid)) if da.point else None
                    v = ""
                    if got is not None:
                        try:
                            v = from_spot(da.point, da.btype, got[0])
                        except (TypeError, ValueError, IndexError, SpotError):
                            pass
                    out["%s$DC$%s$%s" % (ln.name, do.name, da.name)] = v
                continue
            _do_values(ld, ln, do, latest, presence, now, out,
                       lambda fc, d=do: "%s$%s$%s$" % (ln.name, fc, d.name), schedule)
    return out


def points(ld):
    """{(sid, oid): [(item of the value attribute, DA, DO)]}: where each SPOT value shows."""
    out = {}
    for ln in ld.lns.values():
        for item, fc, da, do in leaves(ln):
            if da.role == "v" and da.point is not None:
                out.setdefault((da.point.sid, da.point.oid), []).append((item, da, do))
    return out
