"""An IEC 61850 client on libiec61850 (through pyiec61850-ng), run in its own
process by the tests: an independent peer of the bridge's MMS server.

    python libiec61850_client.py PORT 'STEPS'

STEPS is a JSON list of steps; the result is one JSON line: a list with one
{"ok": ...} or {"error": ..., "cause": AddCause} per step. A "report" step
prints READY once its RCB is enabled, then waits for the reports.
Steps: ["lds"], ["lns", ld], ["vars", ld], ["read", ref, fc],
["operate", ref, kind, value] (kind apc | bool | int; selects first for SBO),
["oper_only", ref, kind, value] (no select), ["write", ref, fc, kind, value],
["report", rcb_ref, seconds, count].
"""
import json
import os
import sys
import threading
import time

import pyiec61850.pyiec61850 as L
from pyiec61850.mms import MMSClient
from pyiec61850.mms.reporting import ReportClient, RCBConfig, TRG_OPT_DATA_CHANGED, \
    TRG_OPT_QUALITY_CHANGED, TRG_OPT_GI, RPT_OPT_SEQ_NUM, RPT_OPT_DATA_SET, \
    RPT_OPT_REASON_FOR_INCLUSION, RPT_OPT_DATA_REFERENCE

FCS = {"ST": L.IEC61850_FC_ST, "MX": L.IEC61850_FC_MX, "SP": L.IEC61850_FC_SP,
       "CF": L.IEC61850_FC_CF, "DC": L.IEC61850_FC_DC, "CO": L.IEC61850_FC_CO}


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


def run(con, client, step):
    op = step[0]
    if op == "lds":
        return {"ok": names(unpack(L.IedConnection_getLogicalDeviceList(con))[0])}
    if op == "lns":
        return {"ok": names(unpack(L.IedConnection_getLogicalDeviceDirectory(con, step[1]))[0])}
    if op == "vars":
        return {"ok": names(unpack(L.IedConnection_getLogicalDeviceVariables(con, step[1]))[0])}
    if op == "read":
        v, err = unpack(L.IedConnection_readObject(con, step[1], FCS[step[2]]))
        if err:
            return {"error": "read error %d" % err, "cause": err}
        out = py_value(v)
        L.MmsValue_delete(v)
        return {"ok": out}
    if op in ("operate", "oper_only"):
        return control(con, step[1], step[2], step[3], op == "operate")
    if op == "write":
        val = mms_value(step[3], step[4])
        err = L.IedConnection_writeObject(con, step[1], FCS[step[2]], val)
        err = unpack(err)[1] if isinstance(err, (list, tuple)) else err
        return {"ok": True} if not err else {"error": "write error %d" % err, "cause": err}
    if op == "report":
        rcb, seconds, count = step[1], step[2], step[3]
        got, lock = [], threading.Lock()
        reports = ReportClient(client)

        def on_report(report):
            with lock:
                got.append({"rpt_id": report.rpt_id, "seq": report.seq_num,
                            "dataset": report.data_set_name,
                            "entries": [e.reference for e in report.entries]})
        config = reports.get_rcb_values(rcb)
        reports.install_report_handler(rcb, config.rpt_id or "", on_report)
        reports.set_rcb_values(rcb, RCBConfig(
            trigger_options=TRG_OPT_DATA_CHANGED | TRG_OPT_QUALITY_CHANGED | TRG_OPT_GI,
            option_fields=RPT_OPT_SEQ_NUM | RPT_OPT_DATA_SET | RPT_OPT_REASON_FOR_INCLUSION
            | RPT_OPT_DATA_REFERENCE, rpt_ena=True))
        print("READY", flush=True)
        end = time.time() + seconds
        while time.time() < end:
            with lock:
                if len(got) >= count:
                    break
            time.sleep(0.05)
        return {"ok": list(got)}
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
