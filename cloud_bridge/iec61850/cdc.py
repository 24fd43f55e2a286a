"""IEC 61850-7-3 common data classes (CDC) as data: which data attributes
each class has, with their functional constraint (FC), basic type and
trigger options, in the order IEC 61850-8-1 lays them out in MMS.

Only the classes and attributes the SPOT model uses are here. A template is
a tuple of attributes; an attribute is

    (name, basic type | (member attributes...), FC, trigger options, role)

basic types are the SCL bType names (BOOLEAN, INT8, INT32, INT64, INT8U,
INT32U, FLOAT32, Quality, Timestamp, VisString64, VisString255, Octet64,
Dbpos, Check, Enum:<EnumType id>); trigger options are a string of
d(ata change), q(uality change), u(data update); role says where the value
comes from: "v" the SPOT object's value, "q" its quality, "t" its time,
"c" the control value sent to SPOT, "" fixed / protocol-owned.
"""

# control models (IEC 61850-7-2 ctlModel, CtlModelKind)
STATUS_ONLY = 0
DIRECT_NORMAL = 1
SBO_NORMAL = 2
DIRECT_ENHANCED = 3
SBO_ENHANCED = 4
CTL_MODEL_NAMES = {STATUS_ONLY: "status-only", DIRECT_NORMAL: "direct-with-normal-security",
                   SBO_NORMAL: "sbo-with-normal-security",
                   DIRECT_ENHANCED: "direct-with-enhanced-security",
                   SBO_ENHANCED: "sbo-with-enhanced-security"}

# enumerations the model uses: id -> ((ord, name), ...)
ENUMS = {
    "BehaviourModeKind": ((1, "on"), (2, "on-blocked"), (3, "test"), (4, "test/blocked"), (5, "off")),
    "HealthKind": ((1, "Ok"), (2, "Warning"), (3, "Alarm")),
    "CtlModelKind": tuple(sorted(CTL_MODEL_NAMES.items())),
    "OriginatorCategoryKind": ((0, "not-supported"), (1, "bay-control"), (2, "station-control"),
                               (3, "remote-control"), (4, "automatic-bay"),
                               (5, "automatic-station"), (6, "automatic-remote"),
                               (7, "maintenance"), (8, "process")),
}

_QT = (("q", "Quality", None, "q", "q"), ("t", "Timestamp", None, "", "t"))


def _qt(fc):
    return tuple((n, b, fc, trg, role) for n, b, _, trg, role in _QT)


_ORIGIN = (("orCat", "Enum:OriginatorCategoryKind", None, "", ""),
           ("orIdent", "Octet64", None, "", ""))


def _oper(ctl_type, with_check=True):
    """Members of Oper / SBOw (with_check) or Cancel for a control value type."""
    members = (("ctlVal", ctl_type, None, "", "c"),
               ("origin", _ORIGIN, None, "", ""),
               ("ctlNum", "INT8U", None, "", ""),
               ("T", "Timestamp", None, "", ""),
               ("Test", "BOOLEAN", None, "", ""))
    if with_check:
        members += (("Check", "Check", None, "", ""),)
    return members


_FLOAT = (("f", "FLOAT32", None, "", "v"),)
_FLOAT_CTL = (("f", "FLOAT32", None, "", "c"),)


def _controllable(st, ctl_type):
    """A controllable class: status, the Oper/SBOw/Cancel structures, ctlModel, sboTimeout."""
    return (st + (("SBOw", _oper(ctl_type), "CO", "", ""),
                  ("Oper", _oper(ctl_type), "CO", "", ""),
                  ("Cancel", _oper(ctl_type, False), "CO", "", ""),
                  ("ctlModel", "Enum:CtlModelKind", "CF", "d", ""),
                  ("sboTimeout", "INT32U", "CF", "d", "")))


CDCS = {
    # measured and status information
    "MV": (("mag", _FLOAT, "MX", "d", ""),) + _qt("MX"),
    "CMV": (("cVal", (("mag", _FLOAT, None, "", ""),), "MX", "d", ""),) + _qt("MX"),
    "SPS": (("stVal", "BOOLEAN", "ST", "d", "v"),) + _qt("ST"),
    "INS": (("stVal", "INT32", "ST", "d", "v"),) + _qt("ST"),
    "BCR": (("actVal", "INT64", "ST", "d", "v"),) + _qt("ST"),
    "VSS": (("stVal", "VisString255", "ST", "d", "v"),) + _qt("ST"),
    "ENS_BEH": (("stVal", "Enum:BehaviourModeKind", "ST", "d", "v"),) + _qt("ST"),
    "ENS_HEALTH": (("stVal", "Enum:HealthKind", "ST", "d", "v"),) + _qt("ST"),
    # controls
    "SPC": _controllable((("stVal", "BOOLEAN", "ST", "d", "v"),) + _qt("ST"), "BOOLEAN"),
    "DPC": _controllable((("stVal", "Dbpos", "ST", "d", "v"),) + _qt("ST"), "BOOLEAN"),
    "INC": _controllable((("stVal", "INT32", "ST", "d", "v"),) + _qt("ST"), "INT32"),
    "APC": _controllable((("mxVal", _FLOAT, "MX", "d", ""),) + _qt("MX"), _FLOAT_CTL),
    # settings (SetDataValues)
    "ASG": (("setMag", _FLOAT, "SP", "d", ""),),
    "ING": (("setVal", "INT32", "SP", "d", "v"),),
    "VSG": (("setVal", "VisString255", "SP", "d", "v"),),
    # descriptions
    "DPL": (("vendor", "VisString255", "DC", "", "v"),
            ("hwRev", "VisString255", "DC", "", "v"),
            ("swRev", "VisString255", "DC", "", "v"),
            ("serNum", "VisString255", "DC", "", "v"),
            ("model", "VisString255", "DC", "", "v"),
            ("location", "VisString255", "DC", "", "v")),
    "LPL": (("vendor", "VisString255", "DC", "", ""),
            ("swRev", "VisString255", "DC", "", ""),
            ("d", "VisString255", "DC", "", ""),
            ("configRev", "VisString255", "DC", "", ""),
            ("ldNs", "VisString255", "EX", "", "")),
}

# the class name SCL and clients see (ENS_BEH and ENS_HEALTH are both ENS)
CDC_NAME = {"ENS_BEH": "ENS", "ENS_HEALTH": "ENS"}

# classes a client operates (Oper) and classes it writes (SetDataValues)
CONTROLLABLE = frozenset(("SPC", "DPC", "INC", "APC"))
SETTINGS = frozenset(("ASG", "ING", "VSG"))
# FC of the value attribute of each class that carries one SPOT value
VALUE_PATH = {"MV": ("MX", "mag$f"), "CMV": ("MX", "cVal$mag$f"), "SPS": ("ST", "stVal"),
              "INS": ("ST", "stVal"), "BCR": ("ST", "actVal"), "VSS": ("ST", "stVal"),
              "SPC": ("ST", "stVal"), "DPC": ("ST", "stVal"), "INC": ("ST", "stVal"),
              "APC": ("MX", "mxVal$f"), "ASG": ("SP", "setMag$f"), "ING": ("SP", "setVal"),
              "VSG": ("SP", "setVal")}
