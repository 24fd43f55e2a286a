"""IEEE 2030.5 XML (namespace urn:ieee:std:2030.5:ns) <-> plain data. No I/O.

parse(body, expect) checks a server document (well-formed, no DTD or
entities, the 2030.5 namespace, the expected root element) and returns it as
nested dicts: an element with children becomes {local name: value}, a
repeated child a list, attributes "@name", a leaf its text. The typed readers
below (der_control, program, ...) turn those into flat, checked records;
anything malformed raises SepError with what is wrong.

The builders (response, der_status, ...) write the documents the client
sends, elements in schema order, so a strict validator accepts them.
"""
from lxml import etree

NS = "urn:ieee:std:2030.5:ns"
_Q = "{%s}" % NS
MAX_BODY = 1 << 20      # a 2030.5 resource larger than 1 MiB is refused

# Response.status (IEEE 2030.5 Table 27, DER function set)
RECEIVED, STARTED, COMPLETED, OPTED_OUT, NOT_PARTICIPATING = 1, 2, 3, 4, 5
CANCELLED, SUPERSEDED = 6, 7
REJECTED_EXPIRED, REJECTED_INVALID = 252, 253

# EventStatus.currentStatus
SCHEDULED, ACTIVE, EV_CANCELLED, EV_CANCELLED_RANDOM, EV_SUPERSEDED = 0, 1, 2, 3, 4

# responseRequired bits
RR_RECEIVED, RR_SPECIFIC, RR_OPT = 1, 2, 4


class SepError(ValueError):
    """A 2030.5 document that cannot be used as sent (malformed, wrong type, out of range)."""


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          dtd_validation=False, huge_tree=False, remove_comments=True,
                          remove_pis=True)


# ----------------------------------------------------------------- generic

def _data(el):
    kids = [c for c in el if isinstance(c.tag, str)]
    if not kids:
        if el.attrib:
            out = {"@" + k: v for k, v in el.attrib.items()}
            if el.text and el.text.strip():
                out["#text"] = el.text.strip()
            return out
        return (el.text or "").strip()
    out = {"@" + k: v for k, v in el.attrib.items()}
    lists = set()
    for c in kids:
        if not c.tag.startswith(_Q):
            raise SepError("element %s is not in the 2030.5 namespace" % c.tag)
        name = c.tag[len(_Q):]
        v = _data(c)
        if name in lists:
            out[name].append(v)
        elif name in out:
            out[name] = [out[name], v]
            lists.add(name)
        else:
            out[name] = v
    return out


def parse(body, expect=None):
    """(root local name, data) of a 2030.5 document; SepError if it is not one (of `expect`)."""
    if not isinstance(body, (bytes, bytearray)):
        raise SepError("document is not bytes")
    if len(body) > MAX_BODY:
        raise SepError("document of %d bytes is larger than %d" % (len(body), MAX_BODY))
    if b"<!DOCTYPE" in body[:2048] or b"<!ENTITY" in body:
        raise SepError("document has a DTD or entity declarations")
    try:
        root = etree.fromstring(bytes(body), parser=_PARSER)
    except etree.XMLSyntaxError as e:
        raise SepError("malformed XML: %s" % e)
    if not isinstance(root.tag, str) or not root.tag.startswith(_Q):
        raise SepError("root element %s is not in namespace %s" % (root.tag, NS))
    name = root.tag[len(_Q):]
    if expect is not None and name not in ((expect,) if isinstance(expect, str) else expect):
        raise SepError("expected %s, got %s" % (expect, name))
    data = _data(root)
    return name, data if isinstance(data, dict) else {"@": data}


def items(data, name):
    """The children called `name` as a list (none, one or many)."""
    v = data.get(name) if isinstance(data, dict) else None
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def link(data, name):
    """href of a ...Link child, or None."""
    v = data.get(name) if isinstance(data, dict) else None
    if isinstance(v, dict) and isinstance(v.get("@href"), str) and v["@href"]:
        return v["@href"]
    return None


# ----------------------------------------------------------------- values

def _int(v, what, lo=None, hi=None):
    if isinstance(v, dict):
        v = v.get("#text")
    try:
        x = int(v)
    except (TypeError, ValueError):
        raise SepError("%s is not an integer: %r" % (what, v))
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise SepError("%s = %d is out of range [%s, %s]" % (what, x, lo, hi))
    return x


def _opt_int(d, name, what, lo=None, hi=None, default=None):
    v = d.get(name)
    return default if v is None else _int(v, what, lo, hi)


def _bool(v, what):
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise SepError("%s is not a boolean: %r" % (what, v))


def _power(v, what):
    """ActivePower / ReactivePower {multiplier, value} -> W (var)."""
    if not isinstance(v, dict):
        raise SepError("%s is not a power value" % what)
    m = _opt_int(v, "multiplier", what + " multiplier", -9, 9, 0)
    return _int(v.get("value"), what + " value", -32768, 32767) * 10.0 ** m


def _pf(v, what):
    """PowerFactorWithExcitation -> signed power factor (negative: under-excited, absorbing)."""
    if not isinstance(v, dict):
        raise SepError("%s is not a power factor" % what)
    m = _opt_int(v, "multiplier", what + " multiplier", -9, 9, -3)
    pf = round(_int(v.get("displacement"), what + " displacement", 0, 65535) * 10.0 ** m, 6)
    if not 0.0 <= pf <= 1.0:
        raise SepError("%s = %.3f is not a power factor" % (what, pf))
    exc = v.get("excitation")
    under = exc is not None and _bool(exc, what + " excitation")
    return -pf if under else pf


def _fixed_var(v, what):
    if not isinstance(v, dict):
        raise SepError("%s is not a FixedVar" % what)
    return _int(v.get("value"), what, -10000, 10000) / 100.0


# DERControlBase fields the client understands: name -> reader (value in SI or %)
BASE_FIELDS = {
    "opModConnect": lambda v, w: _bool(v, w),
    "opModEnergize": lambda v, w: _bool(v, w),
    "opModMaxLimW": lambda v, w: _int(v, w, 0, 10000) / 100.0,            # PerCent -> %
    "opModFixedW": lambda v, w: _int(v, w, -10000, 10000) / 100.0,        # SignedPerCent -> %
    "opModTargetW": _power,                                                 # W, + = injecting
    "opModTargetVar": _power,                                               # var
    "opModFixedPFInjectW": _pf,
    "opModFixedPFAbsorbW": _pf,
    "opModFixedVar": _fixed_var,                                            # % of rating
    "rampTms": lambda v, w: _int(v, w, 0, 65535) / 100.0,                   # s
}


def control_base(d):
    """{field: value} of a DERControlBase; unknown (curve) modes are listed under "unsupported"."""
    if not isinstance(d, dict):
        raise SepError("DERControlBase is missing")
    out, unsupported = {}, []
    for name, v in d.items():
        if name.startswith("@"):
            continue
        reader = BASE_FIELDS.get(name)
        if reader is None:
            unsupported.append(name)
        else:
            out[name] = reader(v, name)
    if unsupported:
        out["unsupported"] = sorted(unsupported)
    return out


# ----------------------------------------------------------------- records

def der_control(d, default=False):
    """A flat DERControl (or DefaultDERControl) record; SepError if malformed."""
    mrid = d.get("mRID")
    if not isinstance(mrid, str) or not mrid or len(mrid) > 32:
        raise SepError("control has no valid mRID")
    try:
        int(mrid, 16)
    except ValueError:
        raise SepError("mRID %r is not hexadecimal" % mrid)
    rec = {"mrid": mrid.upper(), "href": d.get("@href"), "description": d.get("description"),
           "version": _opt_int(d, "version", "version", 0, 65535, 0),
           "base": control_base(d.get("DERControlBase")),
           "reply_to": d.get("@replyTo"),
           "response_required": int(d.get("@responseRequired") or "0", 16) & 0xFF}
    if default:
        return rec
    iv = d.get("interval")
    if not isinstance(iv, dict):
        raise SepError("control %s has no interval" % mrid)
    rec["start"] = _int(iv.get("start"), "interval start", 0, 2 ** 63)
    rec["duration"] = _int(iv.get("duration"), "interval duration", 1, 2 ** 32 - 1)
    rec["creation"] = _opt_int(d, "creationTime", "creationTime", 0, 2 ** 63, 0)
    st = d.get("EventStatus")
    if not isinstance(st, dict):
        raise SepError("control %s has no EventStatus" % mrid)
    rec["status"] = _int(st.get("currentStatus"), "currentStatus", 0, 4)
    rec["status_time"] = _opt_int(st, "dateTime", "EventStatus dateTime", 0, 2 ** 63, 0)
    ps = st.get("potentiallySuperseded")
    rec["potentially_superseded"] = ps is not None and _bool(ps, "potentiallySuperseded")
    rec["randomize_start"] = _opt_int(d, "randomizeStart", "randomizeStart", -2 ** 31, 2 ** 31, 0)
    rec["randomize_duration"] = _opt_int(d, "randomizeDuration", "randomizeDuration",
                                         -2 ** 31, 2 ** 31, 0)
    return rec


def program(d):
    """{href, mrid, description, primacy, controls, default, active} of a DERProgram."""
    if not isinstance(d, dict):
        raise SepError("DERProgram is not an element")
    return {"href": d.get("@href"), "mrid": d.get("mRID"), "description": d.get("description"),
            "primacy": _int(d.get("primacy"), "program primacy", 0, 255),
            "controls": link(d, "DERControlListLink"),
            "default": link(d, "DefaultDERControlLink"),
            "active": link(d, "ActiveDERControlListLink")}


def poll_rate(d, default=900):
    return _opt_int(d, "@pollRate", "pollRate", 1, 2 ** 32 - 1, default)


def current_time(d):
    return _int(d.get("currentTime"), "Time currentTime", 0, 2 ** 63)


# ----------------------------------------------------------------- builders

def _el(parent, name, text=None, **attrs):
    e = etree.SubElement(parent, _Q + name, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        e.text = str(text)
    return e


def _doc(root):
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _root(name):
    return etree.Element(_Q + name, nsmap={None: NS})


def response(lfdi, mrid, status, t):
    """A DERControlResponse for control mrid."""
    r = _root("DERControlResponse")
    _el(r, "createdDateTime", int(t))
    _el(r, "endDeviceLFDI", lfdi.upper())
    _el(r, "status", int(status))
    _el(r, "subject", mrid)
    return _doc(r)


def _active_power(parent, name, watts):
    """ActivePower {multiplier, value}: the smallest power of ten that fits an Int16."""
    m, v = 0, float(watts)
    while abs(round(v)) > 32767 and m < 9:
        v /= 10.0
        m += 1
    e = _el(parent, name)
    _el(e, "multiplier", m)
    _el(e, "value", int(round(v)))


def der_capability(rtg_max_w, der_type, modes, rtg_max_charge_w=None, rtg_max_wh=None):
    r = _root("DERCapability")
    _el(r, "modesSupported", "%08X" % modes)
    if rtg_max_charge_w is not None:
        _active_power(r, "rtgMaxChargeRateW", rtg_max_charge_w)
    _active_power(r, "rtgMaxW", rtg_max_w)
    if rtg_max_wh is not None:
        e = _el(r, "rtgMaxWh")
        m, v = 0, float(rtg_max_wh)
        while abs(round(v)) > 32767 and m < 9:
            v /= 10.0
            m += 1
        _el(e, "multiplier", m)
        _el(e, "value", int(round(v)))
    _el(r, "type", der_type)
    return _doc(r)


def der_settings(set_max_w, t, modes, grad_w=0):
    r = _root("DERSettings")
    _el(r, "modesEnabled", "%08X" % modes)
    _el(r, "setGradW", int(grad_w))
    _active_power(r, "setMaxW", set_max_w)
    _el(r, "updatedTime", int(t))
    return _doc(r)


def der_status(t, connected, operating, soc=None):
    """DERStatus: genConnectStatus bits (0 connected, 1 available, 2 operating), SoC in %."""
    r = _root("DERStatus")
    bits = (1 | 2 | (4 if operating else 0)) if connected else 0
    gc = _el(r, "genConnectStatus")
    _el(gc, "dateTime", int(t))
    _el(gc, "value", "%02X" % bits)
    _el(r, "readingTime", int(t))
    if soc is not None:
        s = _el(r, "stateOfChargeStatus")
        _el(s, "dateTime", int(t))
        _el(s, "value", int(round(max(0.0, min(100.0, soc)) * 100)))
    return _doc(r)


def der_availability(t, w_avail):
    r = _root("DERAvailability")
    _el(r, "readingTime", int(t))
    _active_power(r, "statWAvail", max(0.0, w_avail))
    return _doc(r)


def mirror_usage_point(lfdi, mrid, description, t, watts, wh):
    """A MirrorUsagePoint with two readings: net active power (W) and net energy (Wh)."""
    r = _root("MirrorUsagePoint")
    _el(r, "mRID", mrid)
    _el(r, "description", description)
    _el(r, "roleFlags", "0003")          # isMirror | isPremisesAggregationPoint
    _el(r, "serviceCategoryKind", 0)     # electricity
    _el(r, "status", 1)
    _el(r, "deviceLFDI", lfdi.upper())
    for k, (value, uom, kind, accumulation) in enumerate(
            ((watts, 38, 37, 12), (wh, 72, 12, 4))):
        mmr = _el(r, "MirrorMeterReading")
        _el(mmr, "mRID", "%s%02X" % (mrid[:30], k + 1))
        _el(mmr, "description", ("power", "energy")[k])
        _el(mmr, "lastUpdateTime", int(t))
        rd = _el(mmr, "Reading")
        _el(rd, "value", int(round(value)))
        rt = _el(mmr, "ReadingType")
        _el(rt, "accumulationBehaviour", accumulation)
        _el(rt, "commodity", 1)
        _el(rt, "dataQualifier", 0)
        _el(rt, "flowDirection", 1)
        _el(rt, "kind", kind)
        _el(rt, "powerOfTenMultiplier", 0)
        _el(rt, "uom", uom)
    return _doc(r)
