"""The MMS services of the XMPP plugin, as IEC 61850-8-1 maps ACSI onto MMS, on the
shared IEC 61850 model (cloud_bridge/iec61850: model.py and acsi.py).

    GetNameList        domains (GetServerDirectory), a domain's variables
                       (GetLogicalDeviceDirectory ...), its data sets
    Read               GetDataValues of named variables or of a data set
    Write              SetDataValues of settings; controls: $SBOw selects (checked,
                       nothing sent), $Oper operates through the durable command
                       queue and answers with the device's own result, $Cancel
    GetVariableAccessAttributes   GetDataDefinition
    GetNamedVariableListAttributes GetDataSetDirectory
    InformationReport  an unbuffered report of data set "All" on device changes

Each exposed device's name plate (device_info: LPHD1 PhyNam, DRAT ratings),
which devices do not send as telemetry, is read once in the background through
the command queue when the device joins the model.

A request names objects of its scope only: the whole exposed fleet on the
gateway resource, one device's logical device on that device's resource.
Access faults are MMS errors in a normal response (DataAccessError per
variable; a ServiceError for the whole request); a monitor's write reaches
no device and gets object-access-denied.
"""
import asyncio
import logging
import time

from ...iec61850 import acsi as A
from ...iec61850 import cdc as C
from ...iec61850 import model as X
from ...plugin_api import member_filter
from ...tasks import cancel_and_wait
from . import mms_data as D

LOG = logging.getLogger("spot.bridge.plugin.xmpp")

PAGE = 100               # identifiers per GetNameList response
MAX_VARIABLES = 64       # variables per Read / Write
# MMS basic object classes
NAMED_VARIABLE, NAMED_VARIABLE_LIST, DOMAIN = 0, 2, 9
# IEC 61850-8-1 report: OptFlds bits and ReasonCode bits
OPT_SEQ_NUM, OPT_TIME, OPT_REASON, OPT_DATASET = 1, 2, 3, 4
REASON_DATA_CHANGE = 1
EPOCH_1984 = 441763200   # 1984-01-01 in Unix seconds (MMS TimeOfDay day count)

# IEC 61850-7-2 AddCause of a refused control -> the DataAccessError of the write
ADD_CAUSE_ERROR = {
    A.ADD_NOT_SUPPORTED: A.OBJECT_ACCESS_UNSUPPORTED,
    A.ADD_BLOCKED_BY_HEALTH: A.TEMPORARILY_UNAVAILABLE,
    A.ADD_TIME_LIMIT_OVER: A.TEMPORARILY_UNAVAILABLE,
    A.ADD_COMMAND_IN_EXECUTION: A.TEMPORARILY_UNAVAILABLE,
    A.ADD_NO_ACCESS_AUTHORITY: A.OBJECT_ACCESS_DENIED,
    A.ADD_INCONSISTENT_PARAMETERS: A.OBJECT_VALUE_INVALID,
}


class ServiceError(Exception):
    """The whole request fails: an MMS ServiceError (error class, code)."""

    def __init__(self, cls, code, text):
        super().__init__(text)
        self.cls, self.code, self.text = cls, code, text


def object_name(domain, item):
    return ("domain-specific", {"domainId": domain, "itemId": item})


def binary_time(t):
    """MMS TimeOfDay (6 octets): milliseconds of the day, days since 1984-01-01."""
    ms = int(round(t * 1000))
    days, ms_of_day = divmod(ms - EPOCH_1984 * 1000, 86400000)
    return ms_of_day.to_bytes(4, "big") + max(0, days).to_bytes(2, "big")


class MmsServices:
    def __init__(self, ctx, opts, clock=time.monotonic):
        self.keep = member_filter(opts)
        self.acsi = A.Acsi(ctx, opts["ied_name"], self.keep, opts["control_timeout"])
        self.clock = clock
        self.selected = {}       # (jid, domain, control) -> deadline of the selection
        self.seq = {}            # domain -> next report SeqNum
        self._stale = True
        self._fetching = {}      # device -> task reading its name plate

    def invalidate(self):
        """The registry changed: rebuild the model before it is next used (once for
        a burst of registrations, not once per device)."""
        self._stale = True

    async def fresh(self):
        if self._stale:
            self._stale = False
            await self.acsi.refresh()
            for device in self.acsi.model.by_device:
                if device not in self.acsi.fetched and device not in self._fetching:
                    self._fetching[device] = asyncio.ensure_future(self._name_plate(device))

    async def _name_plate(self, device):
        """READ a new device's name plate (LPHD1 PhyNam, ratings) once, in the background."""
        try:
            await self.acsi.fetch_name_plate(device)
        except Exception:
            LOG.exception("xmpp: reading the name plate of %s failed", device)
        finally:
            self._fetching.pop(device, None)

    async def stop(self):
        await cancel_and_wait(list(self._fetching.values()))

    def exposes_record(self, device):
        """Whether a store Device record is exposed (without building the model)."""
        return self.keep is None or self.keep(device)

    # ------------------------------------------------------------ dispatch

    async def handle(self, req, scope, may_control, who):
        """The response MMSpdu to a Confirmed-RequestPDU value."""
        await self.fresh()
        invoke = req["invokeID"]
        kind, body = req["confirmedServiceRequest"]
        try:
            result = await getattr(self, "_" + kind)(body, scope, may_control, who)
        except ServiceError as e:
            return ("confirmed-ErrorPDU", {"invokeID": invoke, "serviceError": {
                "errorClass": (e.cls, e.code), "additionalDescription": e.text[:255]}})
        return ("confirmed-ResponsePDU", {"invokeID": invoke,
                                          "confirmedServiceResponse": (kind, result)})

    def _domains(self, scope):
        if scope is None:
            return list(self.acsi.model.lds)
        ld = self.acsi.model.by_device.get(scope)
        return [ld.domain] if ld is not None else []

    def _in_scope(self, name, scope):
        """(domain, item) of a domain-specific ObjectName in scope, else ServiceError."""
        kind, v = name
        if kind != "domain-specific":
            raise ServiceError("access", 1, "only domain-specific names are served")
        if v["domainId"] not in self._domains(scope):
            raise ServiceError("access", 2, "no domain %s here" % v["domainId"])
        return v["domainId"], v["itemId"]

    def _dataset(self, name, scope):
        domain, item = self._in_scope(name, scope)
        ld = self.acsi.model.lds[domain]
        ds = item[len("LLN0$"):] if item.startswith("LLN0$") else None
        if ds not in ld.datasets:
            raise ServiceError("access", 2, "no data set %s/%s" % (domain, item))
        return domain, ["%s$%s$%s" % m for m in ld.datasets[ds]]

    # ------------------------------------------------------------ GetNameList

    async def _getNameList(self, body, scope, may_control, who):
        cls = body["objectClass"][1]
        where, domain = body["objectScope"]
        if cls == DOMAIN and where == "vmdSpecific":
            names = sorted(self._domains(scope))
        elif cls in (NAMED_VARIABLE, NAMED_VARIABLE_LIST) and where == "domainSpecific":
            if domain not in self._domains(scope):
                raise ServiceError("access", 2, "no domain %s here" % domain)
            ld = self.acsi.model.lds[domain]
            names = sorted(self.acsi.name_list(domain) if cls == NAMED_VARIABLE
                           else ["LLN0$" + n for n in ld.datasets])
        else:
            raise ServiceError("access", 1, "object class %d in this scope is not served" % cls)
        after = body.get("continueAfter")
        if after is not None:
            names = [n for n in names if n > after]
        return {"listOfIdentifier": names[:PAGE], "moreFollows": len(names) > PAGE}

    # ------------------------------------------------------------ Read

    async def _results(self, domain, items):
        """The AccessResults of items of one domain, from one look at the store."""
        out = []
        for item, value in zip(items, await self.acsi.read_many(domain, items)):
            if isinstance(value, A.AcsiError):
                out.append(("failure", value.code))
            else:
                out.append(("success", D.to_data(self.acsi.definition(domain, item), value)))
        return out

    async def _read(self, body, scope, may_control, who):
        kind, spec = body["variableAccessSpecificatn"]
        if kind == "variableListName":
            domain, items = self._dataset(spec, scope)
            results = await self._results(domain, items)
        else:
            if len(spec) > MAX_VARIABLES:
                raise ServiceError("service", 3, "more than %d variables" % MAX_VARIABLES)
            results = []
            for v in spec:
                try:
                    domain, item = self._in_scope(v["variableSpecification"][1], scope)
                except ServiceError:
                    results.append(("failure", A.OBJECT_NON_EXISTENT))
                    continue
                results += await self._results(domain, [item])
        out = {"listOfAccessResult": results}
        if body.get("specificationWithResult"):
            out["variableAccessSpecificatn"] = body["variableAccessSpecificatn"]
        return out

    # ------------------------------------------------------------ Write and controls

    async def _write(self, body, scope, may_control, who):
        kind, spec = body["variableAccessSpecificatn"]
        data = body["listOfData"]
        if kind != "listOfVariable":
            raise ServiceError("access", 1, "writing a data set is not served")
        if len(spec) != len(data) or len(spec) > MAX_VARIABLES:
            raise ServiceError("definition", 4, "one value per variable, at most %d"
                               % MAX_VARIABLES)
        out = []
        for v, d in zip(spec, data):
            if not may_control:
                out.append(("failure", A.OBJECT_ACCESS_DENIED))
                continue
            try:
                domain, item = self._in_scope(v["variableSpecification"][1], scope)
            except ServiceError:
                out.append(("failure", A.OBJECT_NON_EXISTENT))
                continue
            code = await self._write_one(domain, item, d, who)
            out.append(("success", None) if code is None else ("failure", code))
        return out

    async def _write_one(self, domain, item, data, who):
        """None when written, else the DataAccessError."""
        try:
            t = self.acsi.definition(domain, item)
            value = D.from_data(t, data)
        except A.AcsiError as e:
            return e.code
        except D.DataError:
            return A.TYPE_INCONSISTENT
        parts = item.split("$")
        if len(parts) == 4 and parts[1] == "CO":
            return await self._control(domain, "$".join(parts[:3]), parts[3], value, who)
        try:
            await self.acsi.write(domain, item, value)
        except A.AcsiError as e:
            return e.code
        return None

    async def _control(self, domain, target, part, value, who):
        ctl_val = value.get("ctlVal") if isinstance(value, dict) else None
        key = (who, domain, target)
        now = self.clock()
        try:
            if part == "Cancel":
                return None if self.selected.pop(key, None) is not None \
                    else A.OBJECT_ACCESS_DENIED
            if part == "SBOw":
                self.acsi.check_control(domain, target, ctl_val)
                self.selected[key] = now + X.SBO_TIMEOUT_MS / 1000.0
                return None
            if part != "Oper":
                return A.OBJECT_ACCESS_UNSUPPORTED
            do = X.find(self.acsi.model, domain, target).obj
            if do.ctl_model in (C.SBO_NORMAL, C.SBO_ENHANCED):
                if self.selected.pop(key, 0) < now:
                    return A.OBJECT_ACCESS_DENIED      # not selected (or selection expired)
            await self.acsi.operate(domain, target, ctl_val)
            return None
        except A.ControlRefused as e:
            return ADD_CAUSE_ERROR.get(e.add_cause, A.OBJECT_ACCESS_DENIED)
        except KeyError:
            return A.OBJECT_NON_EXISTENT

    # ------------------------------------------------------------ definitions, data sets

    async def _getVariableAccessAttributes(self, body, scope, may_control, who):
        domain, item = self._in_scope(body[1], scope)
        try:
            t = self.acsi.definition(domain, item)
        except A.AcsiError:
            raise ServiceError("access", 2, "no %s/%s" % (domain, item))
        return {"mmsDeletable": False, "typeDescription": D.type_description(t)}

    async def _getNamedVariableListAttributes(self, body, scope, may_control, who):
        domain, items = self._dataset(body, scope)
        return {"mmsDeletable": False, "listOfVariable": [
            {"variableSpecification": ("name", object_name(domain, i))} for i in items]}

    # ------------------------------------------------------------ reports

    async def report(self, event):
        """The informationReport of a telemetry event (IEC 61850-8-1 report of the
        unbuffered RCB on data set All, reason data-change), or None."""
        await self.fresh()
        ld = self.acsi.model.by_device.get(event["device"])
        if ld is None:
            return None
        rcb = next((r for r in ld.rcbs if not r.buffered), None)
        if rcb is None or rcb.dataset not in ld.datasets:
            return None
        sid, changed = event["service"], {int(k) for k in event["values"]}
        members = ld.datasets[rcb.dataset]
        included = []
        for i, (ln, fc, do) in enumerate(members):
            point = ld.lns[ln].dos[do].point
            if point is not None and point.sid == sid and point.oid in changed:
                included.append((i, "%s$%s$%s" % (ln, fc, do)))
        if not included:
            return None
        seq = self.seq.get(ld.domain, 0)
        self.seq[ld.domain] = (seq + 1) % 65536
        opt = (1 << OPT_SEQ_NUM) | (1 << OPT_TIME) | (1 << OPT_REASON) | (1 << OPT_DATASET)
        inclusion = sum(1 << i for i, _ in included)
        results = [("success", ("visible-string", rcb.rpt_id)),
                   ("success", ("bit-string", D._bits(opt, 10))),
                   ("success", ("unsigned", seq)),
                   ("success", ("binary-time", binary_time(event.get("t") or time.time()))),
                   ("success", ("visible-string", "%s/LLN0$%s" % (ld.domain, rcb.dataset))),
                   ("success", ("bit-string", D._bits(inclusion, len(members))))]
        results += await self._results(ld.domain, [item for _, item in included])
        results += [("success", ("bit-string", D._bits(1 << REASON_DATA_CHANGE, 7)))
                    for _ in included]
        return ("unconfirmed-PDU", {"unconfirmedService": ("informationReport", {
            "variableAccessSpecification": ("variableListName", ("vmd-specific", "RPT")),
            "listOfAccessResult": results})})
