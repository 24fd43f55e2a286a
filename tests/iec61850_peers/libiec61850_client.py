"""An IEC 61850 client on libiec61850 (through pyiec61850-ng), run in its own
process by the tests: an independent peer of the bridge's MMS server.

    python libiec61850_client.py PORT 'STEPS'

STEPS is a JSON list of steps; the result is one JSON line: a list with one
{"ok": ...} or {"error": ..., "cause": AddCause} per step. A "report" step
prints READY once its RCB is enabled, then waits for the reports.
Steps: ["lds"], ["dir", do_ref], ["sleep", seconds] (prints READY first), ["lns", ld], ["vars", ld], ["read", ref, fc],
["operate", ref, kind, value] (kind apc | bool | int; selects first for SBO),
["oper_only", ref, kind, value] (no select), ["select_only", ref, kind, value],
["select_cancel_oper", ref, kind, value] (SBOw, Cancel, then Oper without a new select),
["abort"] (ACSE abort of the association; the process stays),
["oper_at", ref, kind, value, seconds] (an Oper carrying operTm, now + seconds: a
TimeActivatedOperate, written as the raw 7-member structure),
["write", ref, fc, kind, value],
["report", rcb_ref, seconds, count], ["brcb", rcb_ref, seconds, count, entry_id hex | null],
and for bench/iec61850_rw.py ["time_read", ref, fc, n], ["time_operate", ref, kind, n],
["report_stream", rcb_ref, seconds] (prints "R <unix time>" per report).
"""
import json
import os
import sys
import threading
import time

import pyiec61850.pyiec61850 as L
from pyiec61850.mms import MMSClient

# IEC 61850-7-2 trigger options and optional fields, as libiec61850 numbers them
TRG_DCHG, TRG_QCHG, TRG_GI = 1, 2, 16
OPT_SEQ_NUM, OPT_TIME_STAMP, OPT_REASON, OPT_DATA_SET, OPT_ENTRY_ID = 1, 2, 4, 8, 64
KEEP = []   # report subscribers live as long as the process

FCS = {"ST": L.IEC61850_FC_ST, "MX": L.IEC61850_FC_MX, "SP": L.IEC61850_FC_SP,
       "CF": L.IEC61850_FC_CF, "DC": L.IEC61850_FC_DC, "CO": L.IEC61850_FC_CO,
       "BR": L.IEC61850_FC_BR, "RP": L.IEC61850_FC_RP}


def names(linked):
    out = []
    el = L.LinkedList_getNext(linked)
    while el:
        out.append(L.toCharP(L.LinkedList_getData(el)))
        el = L.LinkedList_getNext(el)
    L.LinkedList_destroy(linked)
    return out


def unpack(result):
    if isinstance(result, (list, tuple)):
        return result[0], result[-1]
    return result, 0


def mms_value(kind, value):
    if kind == "apc":       # an AnalogueValue structure {f}
        s = L.MmsValue_createEmptyStructure(1)
        L.MmsValue_setElement(s, 0, L.MmsValue_newFloat(float(value)))
        return s
    if kind == "bool":
        return L.MmsValue_newBoolean(bool(value))
    if kind == "float":
        return L.MmsValue_newFloat(float(value))
    return L.MmsValue_newIntegerFromInt32(int(value))


def py_value(v):
    t = L.MmsValue_getType(v)
    if t == L.MMS_FLOAT:
        return L.MmsValue_toFloat(v)
    if t == L.MMS_BOOLEAN:
        return L.MmsValue_getBoolean(v)
    if t in (L.MMS_INTEGER, L.MMS_UNSIGNED):
        return L.MmsValue_toInt64(v)
    if t == L.MMS_VISIBLE_STRING:
        return L.MmsValue_toString(v)
    if t == L.MMS_BIT_STRING:
        return [L.MmsValue_getBitStringBit(v, i) for i in range(L.MmsValue_getBitStringSize(v))]
    if t == L.MMS_UTC_TIME:
        return L.MmsValue_getUtcTimeInMs(v) / 1000.0
    if t == L.MMS_STRUCTURE:
        return [py_value(L.MmsValue_getElement(v, i)) for i in range(L.MmsValue_getArraySize(v))]
    if t == L.MMS_DATA_ACCESS_ERROR:
        return {"access_error": L.MmsValue_getDataAccessError(v)}
    return "type %d" % t


def control(con, ref, kind, value, select):
    ctl = L.ControlObjectClient_create(ref, con)
    if not ctl:
        return {"error": "no control object %s" % ref, "cause": None}
    model = L.ControlObjectClient_getControlModel(ctl)
    val = mms_value(kind, value)
    ok = True
    if select and model == L.CONTROL_MODEL_SBO_ENHANCED:
        ok = L.ControlObjectClient_selectWithValue(ctl, val)
    elif select and model == L.CONTROL_MODEL_SBO_NORMAL:
        ok = L.ControlObjectClient_select(ctl)
    if ok:
        ok = L.ControlObjectClient_operate(ctl, val, 0)
    cause = L.ControlObjectClient_getLastApplError(ctl).addCause
    if ok:
        return {"ok": {"model": model}}
    return {"error": "refused", "cause": cause, "model": model}


def subscribe(con, rcb, handler):
    """The RCB's values, with handler (an RCBHandler) receiving its reports."""
    block = unpack(L.IedConnection_getRCBValues(con, rcb, L.ClientReportControlBlock_create(rcb)))[0]
    subscriber = L.RCBSubscriber()
    subscriber.setIedConnection(con)
    subscriber.setRcbReference(rcb)
    subscriber.setRcbRptId(L.ClientReportControlBlock_getRptId(block))
    subscriber.setEventHandler(handler.__disown__())   # else a segfault at exit
    if not subscriber.subscribe():
        raise RuntimeError("cannot subscribe to %s" % rcb)
    KEEP.append(subscriber)
    return block


def enable(con, block, mask):
    """Write the RCB attributes of mask, then RptEna; an error code or 0."""
    for m in (mask, L.RCB_ELEMENT_RPT_ENA):
        if m == L.RCB_ELEMENT_RPT_ENA:
            L.ClientReportControlBlock_setRptEna(block, True)
        err = L.IedConnection_setRCBValues(con, block, m, True)
        err = err[-1] if isinstance(err, (list, tuple)) else err
        if err:
            return err
    return 0


def octets(v):
    return "".join("%02x" % L.MmsValue_getOctetStringOctet(v, i)
                   for i in range(L.MmsValue_getOctetStringSize(v))) if v else None


def buffered(con, rcb, seconds, count, entry_id):
    """Enable a BRCB (resynchronised after entry_id, hex, when given) and collect
    [{"entry": hex, "ts": ms}] of its reports."""
    got, lock = [], threading.Lock()

    class Handler(L.RCBHandler):
        def trigger(self):
            r = self._client_report
            with lock:
                got.append({"entry": octets(L.ClientReport_getEntryId(r)),
                            "ts": L.ClientReport_getTimestamp(r)})

    block = subscribe(con, rcb, Handler())
    L.ClientReportControlBlock_setTrgOps(block, TRG_DCHG | TRG_QCHG)
    L.ClientReportControlBlock_setOptFlds(block, OPT_SEQ_NUM | OPT_DATA_SET | OPT_REASON
                                          | OPT_TIME_STAMP | OPT_ENTRY_ID)
    mask = L.RCB_ELEMENT_TRG_OPS | L.RCB_ELEMENT_OPT_FLDS
    if entry_id:
        v = L.MmsValue_newOctetString(8, 8)
        for i, b in enumerate(bytes.fromhex(entry_id)):
            L.MmsValue_setOctetStringOctet(v, i, b)
        L.ClientReportControlBlock_setEntryId(block, v)
        mask |= L.RCB_ELEMENT_ENTRY_ID
    err = enable(con, block, mask)   # resynchronise first, then enable
    if err:
        return {"error": "RCB write error %d" % err, "cause": err}
    end = time.time() + seconds
    while time.time() < end:
        with lock:
            if len(got) >= count:
                break
        time.sleep(0.05)
    with lock:
        return {"ok": list(got)}


def timed(con, op, ref, arg, n):
    """n reads (arg: FC) or direct operates (arg: kind) one after the other:
    {"n", "seconds", "latencies_ms"} (sorted)."""
    lat = []
    ctl = L.ControlObjectClient_create(ref, con) if op == "time_operate" else None
    begin = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        if ctl is None:
            v, err = unpack(L.IedConnection_readObject(con, ref, FCS[arg]))
            if err:
                return {"error": "read error %d" % err, "cause": err}
            L.MmsValue_delete(v)
        else:
            val = mms_value(arg, -100 - i % 2)
            if not L.ControlObjectClient_operate(ctl, val, 0):
                return {"error": "operate refused", "cause":
                        L.ControlObjectClient_getLastApplError(ctl).addCause}
        lat.append((time.perf_counter() - t) * 1000)
    return {"ok": {"n": n, "seconds": time.perf_counter() - begin, "latencies_ms": sorted(lat)}}


def report_stream(con, rcb, seconds):
    """Enable a URCB and print "R <unix time>" the moment each report arrives."""
    class Handler(L.RCBHandler):
        def trigger(self):
            print("R %.6f" % time.time(), flush=True)

    block = subscribe(con, rcb, Handler())
    L.ClientReportControlBlock_setTrgOps(block, TRG_DCHG)
    enable(con, block, L.RCB_ELEMENT_TRG_OPS)
    print("READY", flush=True)
    time.sleep(seconds)
    return {"ok": None}


def run(con, client, step):
    op = step[0]
    if op == "sleep":
        print("READY", flush=True)
        time.sleep(step[1])
        return {"ok": None}
    if op == "lds":
        return {"ok": names(unpack(L.IedConnection_getLogicalDeviceList(con))[0])}   # cached
    if op == "lns":
        return {"ok": names(unpack(L.IedConnection_getLogicalDeviceDirectory(con, step[1]))[0])}
    if op == "dir":   # GetDataDirectory of a data object (via GetVariableAccessAttributes)
        return {"ok": names(unpack(L.IedConnection_getDataDirectory(con, step[1]))[0])}
    if op == "vars":
        return {"ok": names(unpack(L.IedConnection_getLogicalDeviceVariables(con, step[1]))[0])}
    if op == "read":
        v, err = unpack(L.IedConnection_readObject(con, step[1], FCS[step[2]]))
        if err:
            return {"error": "read error %d" % err, "cause": err}
        out = py_value(v)
        L.MmsValue_delete(v)
        return {"ok": out}
    if op == "select_only":   # SBOw (select with value) and keep the selection
        ctl = L.ControlObjectClient_create(step[1], con)
        KEEP.append(ctl)
        if L.ControlObjectClient_selectWithValue(ctl, mms_value(step[2], step[3])):
            return {"ok": True}
        return {"error": "select refused", "cause": L.ControlObjectClient_getLastApplError(ctl).addCause}
    if op in ("operate", "oper_only"):
        return control(con, step[1], step[2], step[3], op == "operate")
    if op == "abort":
        err = L.IedConnection_abort(con)
        err = unpack(err)[1] if isinstance(err, (list, tuple)) else err
        return {"ok": L.IedConnection_getState(con)} if not err else {"error": "abort %d" % err,
                                                                        "cause": err}
    if op == "select_cancel_oper":
        ctl = L.ControlObjectClient_create(step[1], con)
        KEEP.append(ctl)
        val = mms_value(step[2], step[3])
        out = {"select": bool(L.ControlObjectClient_selectWithValue(ctl, val)),
               "cancel": bool(L.ControlObjectClient_cancel(ctl))}
        out["operate"] = bool(L.ControlObjectClient_operate(ctl, mms_value(step[2], step[3]), 0))
        out["cause"] = L.ControlObjectClient_getLastApplError(ctl).addCause
        return {"ok": out}
    if op == "oper_at":   # Oper with operTm (IEC 61850-8-1: ctlVal, operTm, origin, ctlNum, T, Test, Check)
        now_ms = int(time.time() * 1000)
        members = [mms_value(step[2], step[3]), L.MmsValue_newUtcTimeByMsTime(now_ms + int(step[4] * 1000))]
        origin = L.MmsValue_createEmptyStructure(2)
        L.MmsValue_setElement(origin, 0, L.MmsValue_newIntegerFromInt16(3))
        L.MmsValue_setElement(origin, 1, L.MmsValue_newOctetString(0, 0))
        members += [origin, L.MmsValue_newUnsignedFromUint32(1), L.MmsValue_newUtcTimeByMsTime(now_ms),
                    L.MmsValue_newBoolean(False), L.MmsValue_newBitString(2)]
        oper = L.MmsValue_createEmptyStructure(len(members))
        for i, m in enumerate(members):
            L.MmsValue_setElement(oper, i, m)
        ref = step[1] + ".Oper"
        err = L.IedConnection_writeObject(con, ref, L.IEC61850_FC_CO, oper)
        err = unpack(err)[1] if isinstance(err, (list, tuple)) else err
        return {"ok": True} if not err else {"error": "write error %d" % err, "cause": err}
    if op == "write":
        val = mms_value(step[3], step[4])
        err = L.IedConnection_writeObject(con, step[1], FCS[step[2]], val)
        err = unpack(err)[1] if isinstance(err, (list, tuple)) else err
        return {"ok": True} if not err else {"error": "write error %d" % err, "cause": err}
    if op == "report":
        rcb, seconds, count = step[1], step[2], step[3]
        got, lock = [], threading.Lock()

        class Handler(L.RCBHandler):
            def trigger(self):   # on libiec61850's receive thread
                r = self._client_report
                values = L.ClientReport_getDataSetValues(r)
                with lock:
                    got.append({"rpt_id": L.ClientReport_getRptId(r),
                                "seq": L.ClientReport_getSeqNum(r),
                                "dataset": L.ClientReport_getDataSetName(r),
                                "entries": L.MmsValue_getArraySize(values) if values else 0})

        block = subscribe(con, rcb, Handler())
        L.ClientReportControlBlock_setTrgOps(block, TRG_DCHG | TRG_QCHG | TRG_GI)
        L.ClientReportControlBlock_setOptFlds(block, OPT_SEQ_NUM | OPT_DATA_SET | OPT_REASON)
        err = enable(con, block, L.RCB_ELEMENT_TRG_OPS | L.RCB_ELEMENT_OPT_FLDS)
        if err:
            return {"error": "RCB write error %d" % err, "cause": err}
        print("READY", flush=True)
        end = time.time() + seconds
        while time.time() < end:
            with lock:
                if len(got) >= count:
                    break
            time.sleep(0.05)
        with lock:
            return {"ok": list(got)}
    if op in ("time_read", "time_operate"):
        return timed(con, op, *step[1:])
    if op == "report_stream":
        return report_stream(con, *step[1:])
    if op == "brcb":
        return buffered(con, *step[1:])
    return {"error": "unknown step %r" % op, "cause": None}


def main():
    port, steps = int(sys.argv[1]), json.loads(sys.argv[2])
    client = MMSClient()
    client.connect("127.0.0.1", port)
    con = client._connection
    results = []
    for step in steps:
        try:
            results.append(run(con, client, step))
        except Exception as e:   # one failed step is a result, not a crash
            results.append({"error": "%s: %s" % (type(e).__name__, e), "cause": None})
    print(json.dumps(results), flush=True)
    os._exit(0)   # libiec61850 handlers are not torn down: leave without the SWIG finalisers


if __name__ == "__main__":
    main()
