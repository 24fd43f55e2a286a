"""ACSI operations (IEC 61850-7-2) on the fleet model, for every mapping
that serves it (MMS over TCP, MMS in XMPP): directories, name lists, data
definitions, reads from the store, and writes / controls that become SPOT
WRITE / INVOKE commands in the bridge's durable queue, answered with the
device's real result.

    acsi = Acsi(ctx, ied_name="SPOT", devices_filter=None, control_timeout=10)
    await acsi.refresh() -> Model             rebuild from the registry
    acsi.server_directory() -> [domain]       GetServerDirectory (LDs)
    acsi.ld_directory(domain) -> [LN name]    GetLogicalDeviceDirectory
    acsi.ln_directory(domain, ln) -> [DO]     GetLogicalNodeDirectory
    acsi.name_list(domain) -> [item]          MMS GetNameList (variables)
    acsi.definition(domain, item) -> type     GetDataDefinition
    await acsi.ld_values(domain) -> {item: v} every leaf (model.values)
    await acsi.fetch_name_plate(device) -> bool   READ device_info once (PhyNam)
    await acsi.close()                        stop listening to the bridge's events
    await acsi.read(domain, item) -> value    GetDataValues: a leaf value, or
                                              {member: value} for a structure
    await acsi.read_many(domain, items) -> [value | AcsiError]   the same, one
                                              look at the store for them all
    acsi.check_control(domain, item, ctl_val) -> Order     (ControlRefused)
    await acsi.operate(domain, item, ctl_val) -> Command   (ControlRefused)
    acsi.check_write(domain, item, value) -> Order         (AcsiError)
    await acsi.write(domain, item, value) -> Command       (AcsiError)
        (None for an FSCH parameter: kept by Acsi until SchdEnaReq)

FSCH1 (a device that takes plans): clients set SchdPrio, StrTm (Unix s),
SchdIntv (s), NumEntr and ValASG001.. (SetDataValues, checked, kept here),
then operate SchdEnaReq: one SPOT plan (primacy SchdPrio, from StrTm until
StrTm + NumEntr * SchdIntv, the target set-point as a schedule) is pushed
through the queue; SchdDsaReq cancels it. SchdSt / ValMV show its state.

item of a control is "LN$CO$DO" (a trailing $Oper / $SBOw is ignored).
AcsiError.code is an MMS DataAccessError; ControlRefused.add_cause an
IEC 61850-7-2 AddCause. Nothing is sent to a device when a check fails;
a device that is offline is refused at once, one that does not answer
within control_timeout ends with time-limit-over (its command expires in
the queue rather than running late).
"""
import asyncio

from ...core import frame as F
from ...core import model as M
from ...core import errors as E
from ...core import services as S
from ...core.errors import SpotError
from ...core.plans import MAX_PRIMACY
from ..service import Forbidden, BadRequest
from . import model as X

# MMS DataAccessError (ISO 9506-2, used by IEC 61850-8-1)
OBJECT_INVALIDATED = 0
HARDWARE_FAULT = 1
TEMPORARILY_UNAVAILABLE = 2
OBJECT_ACCESS_DENIED = 3
OBJECT_UNDEFINED = 4
TYPE_INCONSISTENT = 7
OBJECT_ACCESS_UNSUPPORTED = 9
OBJECT_NON_EXISTENT = 10
OBJECT_VALUE_INVALID = 11

# IEC 61850-7-2 AddCause
ADD_UNKNOWN = 0
ADD_NOT_SUPPORTED = 1
ADD_BLOCKED_BY_PROCESS = 9
ADD_COMMAND_IN_EXECUTION = 12
ADD_BLOCKED_BY_HEALTH = 13
ADD_TIME_LIMIT_OVER = 16
ADD_NO_ACCESS_AUTHORITY = 20
ADD_INCONSISTENT_PARAMETERS = 26

_FINAL = ("done", "error", "expired", "timeout", "rejected")

# SPOT error code -> (AddCause, DataAccessError)
SPOT_ERRORS = {
    E.UNKNOWN_SERVICE: (ADD_NOT_SUPPORTED, OBJECT_NON_EXISTENT),
    E.UNKNOWN_OBJECT: (ADD_NOT_SUPPORTED, OBJECT_NON_EXISTENT),
    E.READ_ONLY: (ADD_NOT_SUPPORTED, OBJECT_ACCESS_DENIED),
    E.OUT_OF_RANGE: (ADD_INCONSISTENT_PARAMETERS, OBJECT_VALUE_INVALID),
    E.WRONG_TYPE: (ADD_INCONSISTENT_PARAMETERS, TYPE_INCONSISTENT),
    E.NOT_AUTHORISED: (ADD_NO_ACCESS_AUTHORITY, OBJECT_ACCESS_DENIED),
    E.TOO_LARGE: (ADD_INCONSISTENT_PARAMETERS, OBJECT_VALUE_INVALID),
    E.BUSY: (ADD_COMMAND_IN_EXECUTION, TEMPORARILY_UNAVAILABLE),
    E.MALFORMED: (ADD_INCONSISTENT_PARAMETERS, TYPE_INCONSISTENT),
    E.UNSUPPORTED: (ADD_NOT_SUPPORTED, OBJECT_ACCESS_UNSUPPORTED),
}


class AcsiError(Exception):
    """A negative response: code is an MMS DataAccessError."""

    def __init__(self, code, detail=""):
        super().__init__(code, detail)
        self.code, self.detail = code, detail


class ControlRefused(Exception):
    """A refused or failed control: add_cause is the IEC 61850-7-2 AddCause."""

    def __init__(self, add_cause, detail=""):
        super().__init__(add_cause, detail)
        self.add_cause, self.detail = add_cause, detail


class Order:
    """A checked SPOT request: device, service, op, body (and the point it acts on)."""
    __slots__ = ("device", "sid", "op", "body", "point", "value", "ref")

    def __init__(self, device, sid, op, body, point, value, ref=""):
        self.device, self.sid, self.op, self.body = device, sid, op, body
        self.point, self.value, self.ref = point, value, ref


def _spot_error(result):
    """The SPOT error code of a command's error result, or None."""
    if isinstance(result, list) and result and type(result[0]) is int:
        return result[0]
    return None


class Acsi:
    def __init__(self, ctx, ied_name="SPOT", devices_filter=None, control_timeout=10.0):
        self.ctx = ctx
        self.ied_name = X.check_ied_name(ied_name)
        self.devices_filter = devices_filter
        self.control_timeout = float(control_timeout)
        self.model = X.Model(ied_name)
        self.fetched = {}   # device -> {(sid, oid): (wire, t)} read from the device itself
        self.schedules = {}  # domain -> {FSCH parameter: value} as clients set them
        self.plans = {}      # domain -> (plan id, start, interval, [SI values]) pushed by FSCH
        self._last_plan_id = 0
        self._waiting = {}       # command id -> Event set when it is final
        self._listener = None

    async def refresh(self):
        self.model = X.build_model(await self.ctx.devices(), self.ied_name, self.devices_filter)
        return self.model

    # ------------------------------------------------------------ directories

    def _ld(self, domain):
        try:
            return self.model.lds[domain]
        except KeyError:
            raise AcsiError(OBJECT_NON_EXISTENT, "no logical device %r" % (domain,))

    def _node(self, domain, item):
        try:
            return X.find(self.model, domain, item)
        except (KeyError, AttributeError):
            raise AcsiError(OBJECT_NON_EXISTENT, "no %s/%s" % (domain, item))

    def server_directory(self):
        return list(self.model.lds)

    def ld_directory(self, domain):
        return list(self._ld(domain).lns)

    def ln_directory(self, domain, ln):
        ld = self._ld(domain)
        if ln not in ld.lns:
            raise AcsiError(OBJECT_NON_EXISTENT, "no %s/%s" % (domain, ln))
        return list(ld.lns[ln].dos)

    def name_list(self, domain):
        return X.name_list(self._ld(domain))

    def definition(self, domain, item):
        node = self._node(domain, item)
        return X.type_of(node.obj, node.fc)

    def presence(self, device):
        return self.ctx.bridge.presence.get(device, "offline")

    # ------------------------------------------------------------ reads

    async def ld_values(self, domain):
        ld = self._ld(domain)
        latest = dict(self.fetched.get(ld.device, {}))
        latest.update(await self.ctx.latest(ld.device))   # telemetry wins
        now = self.ctx.bridge.clock()
        return X.values(ld, latest, self.presence(ld.device), now, self.schedule_state(domain, now))

    def schedule_state(self, domain, now):
        """The FSCH parameters of an LD with SchdSt (1 not ready, 3 ready, 4 running)
        and ValMV (the value of the running slot)."""
        out = dict(self.schedules.get(domain, {}))
        out["st"], out["mv"] = 1, 0.0
        plan = self.plans.get(domain)
        if plan is not None:
            _, start, intv, vals = plan
            if now < start:
                out["st"] = 3
            elif now < start + intv * len(vals):
                out["st"], out["mv"] = 4, vals[int((now - start) // intv)]
        return out

    async def fetch_name_plate(self, device):
        """READ the device's device_info (vendor, model, serial, ...: the LPHD
        name plate and ratings, which devices do not send as telemetry) through
        the queue; True when it answered. Its values then show in ld_values."""
        ld = self.model.by_device.get(device)
        if ld is None or S.DEVICE_INFO not in ld.services:
            return False
        order = Order(device, S.DEVICE_INFO, F.READ, None, None, None,
                      "%s/LPHD1$DC$PhyNam" % ld.domain)
        try:
            cmd = await self.run(order)
        except (Forbidden, BadRequest, LookupError):
            return False
        if cmd is None or cmd.status != "done" or not isinstance(cmd.result, dict):
            return False
        t = cmd.completed_at or self.ctx.bridge.clock()
        self.fetched[device] = {(S.DEVICE_INFO, oid): (v, t) for oid, v in cmd.result.items()
                                if type(oid) is int}
        return True

    async def read(self, domain, item):
        node = self._node(domain, item)
        flat = await self.ld_values(domain)
        if item in flat:
            return flat[item]
        return _nest(X.type_of(node.obj, node.fc), item, flat)

    async def read_many(self, domain, items):
        """GetDataValues of several objects of one LD from one look at the store:
        [value, or the AcsiError of that item] in the order of items."""
        flat = await self.ld_values(domain)
        out = []
        for item in items:
            try:
                node = self._node(domain, item)
            except AcsiError as e:
                out.append(e)
                continue
            out.append(flat[item] if item in flat
                       else _nest(X.type_of(node.obj, node.fc), item, flat))
        return out

    # ------------------------------------------------------------ controls

    def _control_target(self, domain, item):
        parts = item.split("$")
        if len(parts) == 4 and parts[3] in ("Oper", "SBOw", "SBO", "Cancel"):
            parts = parts[:3]
        if len(parts) != 3 or parts[1] != "CO":
            raise ControlRefused(ADD_NOT_SUPPORTED, "%s is not a control object" % item)
        try:
            node = X.find(self.model, domain, "$".join(parts))
        except KeyError:
            raise ControlRefused(ADD_NOT_SUPPORTED, "no control %s/%s" % (domain, item))
        return node.ld, node.obj

    def check_control(self, domain, item, ctl_val):
        """The Order an Oper of ctl_val makes, or ControlRefused (nothing is sent)."""
        ld, do = self._control_target(domain, item)
        if do.param in ("ena", "dsa"):
            return self._schedule_order(ld, do, ctl_val)
        point = do.point
        if point is None or not (point.writable or point.invocable):
            raise ControlRefused(ADD_NOT_SUPPORTED, "%s is read-only" % item)
        if isinstance(ctl_val, dict):   # an AnalogueValue {f: ...}
            ctl_val = ctl_val.get("f", ctl_val.get("i"))
        if self.presence(ld.device) == "offline":
            raise ControlRefused(ADD_BLOCKED_BY_HEALTH, "device %s is offline" % ld.device)
        if point.type == M.NONE:        # an action: operate with true
            if ctl_val is not True:
                raise ControlRefused(ADD_INCONSISTENT_PARAMETERS, "%s runs on true only" % item)
            return Order(ld.device, point.sid, F.INVOKE, [point.oid], point, None)
        try:
            wire = X.to_spot(point, ctl_val)
        except SpotError as e:
            raise ControlRefused(SPOT_ERRORS.get(e.code, (ADD_UNKNOWN,))[0],
                                 "%r does not fit %s: %s" % (ctl_val, point.name, e.args[0]))
        if point.invocable:
            return Order(ld.device, point.sid, F.INVOKE, [point.oid, wire], point, wire)
        return Order(ld.device, point.sid, F.WRITE, {point.oid: wire}, point, wire)

    def _schedule_order(self, ld, do, ctl_val):
        """SchdEnaReq: the FSCH parameters as one SPOT plan of the target set-point
        (a schedule [StrTm, SchdIntv, values]); SchdDsaReq: cancel that plan."""
        if ctl_val is not True:
            raise ControlRefused(ADD_INCONSISTENT_PARAMETERS, "%s runs on true only" % do.name)
        if self.presence(ld.device) == "offline":
            raise ControlRefused(ADD_BLOCKED_BY_HEALTH, "device %s is offline" % ld.device)
        fsch = next(ln for ln in ld.lns.values() if ln.lnclass == "FSCH")
        if do.param == "dsa":
            plan = self.plans.get(ld.domain)
            if plan is None:
                raise ControlRefused(ADD_INCONSISTENT_PARAMETERS, "no schedule is running")
            return Order(ld.device, S.PLANS, "cancel", plan[0], fsch.target, None)
        p = self.schedules.get(ld.domain, {})
        num = p.get("num")
        need = ["start", "intv", "num"] + ["val%d" % i for i in range(1, (num or 0) + 1)]
        missing = [k for k in need if k not in p]
        if missing:
            raise ControlRefused(ADD_INCONSISTENT_PARAMETERS,
                                 "schedule not ready, set first: %s" % ", ".join(missing))
        target = fsch.target
        vals = [p["val%d" % i] for i in range(1, num + 1)]
        wire = [X.to_spot(target, v) for v in vals]
        now = self.ctx.bridge.clock()
        if p["start"] + p["intv"] * num <= now:
            raise ControlRefused(ADD_INCONSISTENT_PARAMETERS, "the schedule ends in the past")
        self._last_plan_id = plan_id = max(self._last_plan_id + 1, int(now) & 0x7FFFFFFF)
        body = (plan_id, p["start"], p["start"] + p["intv"] * num, p.get("prio", 0),
                {target.sid: {target.oid: [p["start"], p["intv"], wire]}})
        return Order(ld.device, S.PLANS, "plan", body, target, (p["start"], p["intv"], vals))

    async def operate(self, domain, item, ctl_val):
        """Run a control on the device; the finished Command, or ControlRefused
        with the AddCause of the refusal or failure."""
        order = self.check_control(domain, item, ctl_val)
        order.ref = "%s/%s" % (domain, item)
        try:
            cmd = await self.run(order)
        except Forbidden as e:
            raise ControlRefused(ADD_NO_ACCESS_AUTHORITY, str(e))
        except (BadRequest, LookupError) as e:
            raise ControlRefused(ADD_INCONSISTENT_PARAMETERS, str(e))
        if cmd is None or cmd.status in ("expired", "timeout"):
            raise ControlRefused(ADD_TIME_LIMIT_OVER, "no answer from %s" % order.device)
        if cmd.status != "done":
            code = _spot_error(cmd.result)
            raise ControlRefused(SPOT_ERRORS.get(code, (ADD_BLOCKED_BY_PROCESS,))[0],
                                 "device %s refused: %r" % (order.device, cmd.result))
        if order.op == "plan":
            self.plans[domain] = (order.body[0],) + order.value
        elif order.op == "cancel":
            self.plans.pop(domain, None)
        return cmd

    # ------------------------------------------------------------ settings

    def check_write(self, domain, item, value):
        """The Order a SetDataValues of a setting makes, or AcsiError (nothing is sent)."""
        node = self._node(domain, item)
        da = node.obj
        do = node.ln.dos.get(node.path[0]) if node.path else None
        if do is not None and do.param in X.SCHEDULE_SETTINGS and isinstance(da, X.DA) \
                and da.role == "v" and da.fc == "SP":
            return Order(node.ld.device, None, "schedule", do.param, node.ln.target,
                         self._schedule_value(node.ln, do.param, value))
        if not isinstance(da, X.DA) or da.btype is None or da.fc not in ("SP", "DC") \
                or da.point is None or da.role != "v":
            raise AcsiError(OBJECT_ACCESS_DENIED, "%s is not a writable setting" % item)
        point = da.point
        if not point.writable:
            raise AcsiError(OBJECT_ACCESS_DENIED, "%s (%s) is read-only" % (item, point.name))
        if self.presence(node.ld.device) == "offline":
            raise AcsiError(TEMPORARILY_UNAVAILABLE, "device %s is offline" % node.ld.device)
        try:
            wire = X.to_spot(point, value)
        except SpotError as e:
            raise AcsiError(SPOT_ERRORS.get(e.code, (0, OBJECT_VALUE_INVALID))[1],
                            "%r does not fit %s: %s" % (value, point.name, e.args[0]))
        return Order(node.ld.device, point.sid, F.WRITE, {point.oid: wire}, point, wire)

    def _schedule_value(self, fsch, param, value):
        """A checked FSCH parameter (kept by the bridge until SchdEnaReq sends the plan)."""
        if param.startswith("val"):
            try:
                X.to_spot(fsch.target, value)
            except SpotError as e:
                raise AcsiError(SPOT_ERRORS.get(e.code, (0, OBJECT_VALUE_INVALID))[1],
                                "%r does not fit %s" % (value, fsch.target.name))
            return float(value)
        lo, hi = {"prio": (0, MAX_PRIMACY), "start": (0, 2**32 - 1), "intv": (1, 86400),
                  "num": (1, len(X.SCHEDULE_SETTINGS) - 4)}[param]
        if type(value) is not int:
            raise AcsiError(TYPE_INCONSISTENT, "%s takes an integer" % param)
        if not lo <= value <= hi:
            raise AcsiError(OBJECT_VALUE_INVALID, "%s must be %d..%d" % (param, lo, hi))
        return value

    async def write(self, domain, item, value):
        order = self.check_write(domain, item, value)
        order.ref = "%s/%s" % (domain, item)
        if order.op == "schedule":     # a schedule parameter: kept here, nothing sent
            self.schedules.setdefault(domain, {})[order.body] = order.value
            return None
        try:
            cmd = await self.run(order)
        except Forbidden as e:
            raise AcsiError(OBJECT_ACCESS_DENIED, str(e))
        except (BadRequest, LookupError) as e:
            raise AcsiError(OBJECT_VALUE_INVALID, str(e))
        if cmd is None or cmd.status in ("expired", "timeout"):
            raise AcsiError(TEMPORARILY_UNAVAILABLE, "no answer from %s" % order.device)
        if cmd.status != "done":
            code = _spot_error(cmd.result)
            raise AcsiError(SPOT_ERRORS.get(code, (0, HARDWARE_FAULT))[1],
                            "device %s refused: %r" % (order.device, cmd.result))
        return cmd

    # ------------------------------------------------------------ the queue

    async def run(self, order):
        """Submit an Order through the plugin context (durable queue, under the
        plugin's actor) and wait for its final state; None if it is not final
        within control_timeout (it then expires in the queue). The outcome is
        audited as action "iec61850" with the 61850 reference."""
        self._listen()
        if order.op == "plan":
            cmd = await self.ctx.push_plan(order.device, *order.body)
        elif order.op == "cancel":
            cmd = await self.ctx.cancel_plan(order.device, order.body)
        else:
            cmd = await self.ctx.submit(order.device, order.sid, order.op, order.body,
                                        expires_in=self.control_timeout,
                                        timeout=self.control_timeout)
        final = await self._final(cmd.id)
        op = F.OP_NAMES[order.op] if type(order.op) is int else order.op
        await self.ctx.bridge.store.audit(
            self.ctx.actor, "iec61850", order.device,
            {"ref": order.ref, "command": cmd.id, "op": op,
             "status": final.status if final is not None else "no answer"},
            self.ctx.bridge.clock())
        return final

    def _listen(self):
        """One subscription to the bridge's events wakes every waiting command."""
        if self._listener is None or self._listener.done():
            queue = self.ctx.bridge.hub.subscribe()
            self._listener = asyncio.ensure_future(self._wake_waiting(queue))

    async def _wake_waiting(self, queue):
        try:
            while True:
                ev = await queue.get()
                if ev.get("type") == "command" and ev.get("status") in _FINAL:
                    waiter = self._waiting.get(ev.get("id"))
                    if waiter is not None:
                        waiter.set()
        finally:
            self.ctx.bridge.hub.unsubscribe(queue)

    async def close(self):
        """Stop listening to the bridge's events (the plugin's stop)."""
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None

    async def _final(self, cid):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.control_timeout + 1.0
        store = self.ctx.bridge.store
        woken = self._waiting[cid] = asyncio.Event()
        try:
            while True:   # the store decides; an event (or a second: events can drop) wakes
                cmd = await store.get_command(cid)
                if cmd is not None and cmd.status in _FINAL:
                    return cmd
                left = deadline - loop.time()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(woken.wait(), min(left, 1.0))
                except asyncio.TimeoutError:
                    pass
                woken.clear()
        finally:
            self._waiting.pop(cid, None)


def _nest(t, prefix, flat):
    """The value of a structure (type description t) from the flat leaf values."""
    if "btype" in t:
        return flat.get(prefix)
    return {m["name"]: _nest(m, prefix + "$" + m["name"], flat) for m in t["members"]}
