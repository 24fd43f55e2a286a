"""An IEC 61850 client on the Rust-core `iec61850` package, run in its own
process by the tests: a second independent peer of the bridge's MMS server.

    python rust_client.py PORT 'STEPS'

Same steps and output as libiec61850_client.py: ["lds"], ["lns", ld],
["vars", ld], ["read", ref, fc], ["operate", ref, kind, value],
["oper_only", ref, kind, value], ["write", ref, fc, kind, value],
["sleep", seconds] (prints READY first), ["report", rcb_ref, seconds, count],
["gi", rcb_ref, seconds, count] (a general interrogation only), ["brcb", rcb_ref, seconds, count, entry_id hex | null].
"""
import asyncio
import json
import sys
import time

import iec61850 as R

MODELS = {0: R.ControlModel.STATUS_ONLY, 1: R.ControlModel.DIRECT_NORMAL,
          2: R.ControlModel.SBO_NORMAL, 3: R.ControlModel.DIRECT_ENHANCED,
          4: R.ControlModel.SBO_ENHANCED}


def value_of(kind, value):
    if kind == "apc":
        return R.MmsValue.structure({"f": float(value)})
    if kind == "bool":
        return bool(value)
    if kind == "float":
        return float(value)
    return int(value)


def plain(v):
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def cause_of(e):
    cause = getattr(e, "add_cause", None)
    return getattr(cause, "value", cause)


async def control(con, ref, kind, value, select):
    ld, _, rest = ref.partition("/")
    ln, _, do = rest.partition(".")
    model = int(await con.read("%s/%s.%s.ctlModel" % (ld, ln, do), R.FC.CF))
    ctl = con.create_control_object(ref, MODELS[model])
    val = value_of(kind, value)
    if select and model == 4:
        await ctl.select_with_value(val)
    elif select and model == 2:
        await ctl.select()
    outcome = await ctl.operate(val)
    if outcome.success:
        return {"ok": {"model": model}}
    cause = outcome.add_cause
    return {"error": "refused", "cause": getattr(cause, "value", cause), "model": model}


async def buffered(con, rcb_ref, seconds, count, entry_id):
    """Enable a BRCB (resynchronised after entry_id, hex, when given) and collect
    [{"entry": hex, "ts": ms}] of its reports."""
    got = []
    handle = await con.get_rcb_values(rcb_ref)
    await con.install_report_handler(
        rcb_ref, lambda r: got.append({"entry": r.entry_id.hex() if r.entry_id else None,
                                       "ts": r.timestamp_ms}), rpt_id=handle.rpt_id)
    if entry_id:   # a plain write: set_rcb_values spells the attribute "EntryId" (0.14.0)
        await con.write(rcb_ref.replace(".BR.", ".") + ".EntryID", R.FC.BR, bytes.fromhex(entry_id))
    handle.rpt_ena = True
    await con.set_rcb_values(handle, R.RcbWriteMask.fields("rpt_ena"))
    end = time.time() + seconds
    while time.time() < end and len(got) < count:
        await con.poll_reports(100)
    return {"ok": got}


async def run(con, step):
    op = step[0]
    if op == "lds":   # the device model fetched again: get_server_directory caches
        model = await con.get_device_model(refresh=True)
        return {"ok": [ld["name"] for ld in model["logical_devices"]]}
    if op == "sleep":
        print("READY", flush=True)
        await asyncio.sleep(step[1])
        return {"ok": None}
    if op == "lns":
        return {"ok": await con.get_logical_device_directory(step[1])}
    if op == "vars":
        model = await con.get_device_model(refresh=True)
        for ld in model["logical_devices"]:
            if ld["name"] == step[1]:
                return {"ok": ld["variables"]}
        return {"error": "no such LD", "cause": None}
    if op == "read":
        return {"ok": plain(await con.read(step[1], getattr(R.FC, step[2])))}
    if op in ("operate", "oper_only"):
        return await control(con, step[1], step[2], step[3], op == "operate")
    if op == "write":
        await con.write(step[1], getattr(R.FC, step[2]), value_of(step[3], step[4]))
        return {"ok": True}
    if op in ("report", "gi"):    # gi: enable, then a general interrogation
        rcb_ref, seconds, count = step[1], step[2], step[3]
        got = []
        handle = await con.get_rcb_values(rcb_ref)
        if op == "gi":   # no data-change reports: only what the interrogation sends
            handle.trigger_options = R.TriggerOptions(general_interrogation=True)
        await con.install_report_handler(
            rcb_ref, lambda r: got.append({"rpt_id": r.rpt_id, "seq": r.sequence_number,
                                           "dataset": r.dataset_name,
                                           "entries": len(r.entries),
                                           "gi": all(e.reason is not None
                                                     and e.reason.general_interrogation
                                                     for e in r.entries)}),
            rpt_id=handle.rpt_id)
        handle.rpt_ena = True
        await con.set_rcb_values(handle, R.RcbWriteMask.fields(
            *(("trigger_options", "rpt_ena") if op == "gi" else ("rpt_ena",))))
        if op == "gi":
            await con.trigger_gi(rcb_ref)
        print("READY", flush=True)
        end = time.time() + seconds
        while time.time() < end and len(got) < count:
            await con.poll_reports(100)
        return {"ok": got}
    if op == "brcb":
        return await buffered(con, *step[1:])
    return {"error": "unknown step %r" % op, "cause": None}


async def main():
    port, steps = int(sys.argv[1]), json.loads(sys.argv[2])
    con = await R.IedConnection.connect("127.0.0.1:%d" % port)
    results = []
    for step in steps:
        try:
            results.append(await run(con, step))
        except Exception as e:   # one failed step is a result, not a crash
            results.append({"error": "%s: %s" % (type(e).__name__, e), "cause": cause_of(e)})
    print(json.dumps(results), flush=True)
    await con.disconnect()


if __name__ == "__main__":
    asyncio.run(main())
