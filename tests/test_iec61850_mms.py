"""The iec61850 plugin's MMS server end to end: the real bridge with the
plugin (by its entry point), a `spot sim` fleet over CoAP, and two
independent MMS clients, each in its own process: libiec61850 (through
pyiec61850-ng) and the Rust-core `iec61850` package. The server is
open61850's; neither client shares code with it."""
import asyncio
import errno
import socket
import subprocess
import sys
import time

import pytest

from iec61850_rig import mms_fleet, peer
from waiting import until
from spot.cloud_bridge.iec61850 import model as X
from spot.core import frame as F
from spot.core import services as S

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FLEET = {"battery": 1, "generator": 1, "meter": 1}
LIB, RUST = "libiec61850_client", "rust_client"


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 240))


def dev(rig, profile):
    return next(d.device_id for d in rig.fleet.devices if d.profile_name == profile)


def ok(results):
    for r in results:
        assert "ok" in r, results
    return [r["ok"] for r in results]


# ------------------------------------------------------------------ browsing

def test_both_clients_browse_the_model_the_profiles_give_and_the_scl_file_describes(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET, quiet=[("ev_charger", "ev.quiet")]) as rig:
            domains = sorted(rig.model.lds)
            steps = [["lds"]] + [["lns", d] for d in domains] + [["vars", d] for d in domains]
            scl = tmp_path / "bridge.icd"
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "spot.cli", "iec61850", "scl", "--data", str(tmp_path),
                "--port", str(rig.port), "--out", str(scl))
            assert await cli.wait() == 0
            from open61850 import scl as open_scl       # an independent SCL parser
            scl_model = open_scl.load_model(str(scl))
            for name in (LIB, RUST):
                got = ok(await peer(name, rig.port, steps))
                assert sorted(got[0]) == domains == sorted(scl_model.logical_devices)
                for i, d in enumerate(domains):
                    ld = rig.model.lds[d]
                    assert sorted(got[1 + i]) == sorted(ld.lns), (name, d)
                    served = set(got[1 + len(domains) + i])
                    mine = set(X.name_list(ld))
                    assert mine <= served, (name, sorted(mine - served)[:5])
                    extra = {n for n in served - mine if not n.startswith(("LLN0$BR", "LLN0$RP"))}
                    assert extra == set(), (name, sorted(extra)[:5])
                    scl_lns = scl_model.logical_devices[d].logical_nodes
                    assert sorted(scl_lns) == sorted(ld.lns)
            bat = rig.model.by_device[dev(rig, "battery")]
            assert {"ZBAT1", "ZBTC1", "DRCC1", "MMXU1", "MMTR1"} <= set(bat.lns)
            gen = rig.model.by_device[dev(rig, "generator")]
            assert {"DGEN1", "DRCC1", "DRAT1"} <= set(gen.lns)
    run(main())


def test_a_device_registering_later_appears_to_a_client_already_connected(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, {"meter": 1}) as rig:
            async def register():
                from spot.ports.cpython.simulator import SimDevice
                late = SimDevice("battery", "bat.late", seed=1, t0=int(time.time()))
                await rig.local.connect("bat.late", late)
                assert await until(lambda: rig.plugin.serving("bat.late"), 20)
                await asyncio.sleep(1)
            late = "SPOT" + X.ld_inst("bat.late")
            got = ok(await peer(RUST, rig.port, [
                ["lds"], ["sleep", 6], ["lds"], ["read", late + "/LLN0.Health.stVal", "ST"]],
                on_ready=register))
            assert rig.domain("bat.late") not in got[0] and rig.domain("bat.late") in got[2]
            assert got[3] == 1                         # the same association reads it
    run(main())


def test_get_data_directory_lists_the_attributes_the_model_gives_a_data_object(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, {"battery": 1}) as rig:
            ld = rig.model.by_device[dev(rig, "battery")]
            refs = [("MMXU1", "TotW"), ("DRCC1", "OutWSet"), ("ZBAT1", "SocMinPct"), ("LLN0", "Beh")]
            got = ok(await peer(LIB, rig.port, [["dir", "%s/%s.%s" % (ld.domain, ln, do)]
                                                for ln, do in refs]))
            for (ln, do), names in zip(refs, got):
                expected = {c.name for c in ld.lns[ln].dos[do].children}
                assert set(names) == expected, (ln, do, names)
    run(main())


# ------------------------------------------------------------------ reads

def test_reads_from_both_clients_match_the_store(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            m = dev(rig, "meter")
            d = rig.domain(m)
            for name in (LIB, RUST):
                v, t = ok(await peer(name, rig.port, [
                    ["read", d + "/MMXU1.AvPhVPhs.mag.f", "MX"],
                    ["read", d + "/MMXU1.AvPhVPhs.t", "MX"]]))
                if isinstance(t, str):                     # the Rust client: 8 octets
                    t = int(t[:8], 16)
                rows = await rig.bridge.store.history(m, S.METER, 3, t_from=int(t), t_to=int(t) + 1)
                assert rows, (name, t)
                assert v == pytest.approx(rows[-1][1] / 10, abs=0.05), name   # scale -1: 0.1 V

            async def name_plate():   # read from the device by the plugin, once
                got = ok(await peer(name, rig.port, [["read", d + "/LPHD1.PhyNam.serNum", "DC"]]))
                return got[0] == m
            for name in (LIB, RUST):
                assert await until(name_plate, 15, every=0.5), name
    run(main())


# ------------------------------------------------------------------ controls

def test_a_direct_control_from_libiec61850_reaches_the_device_and_is_logged(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            b = dev(rig, "battery")
            res = await peer(LIB, rig.port, [["operate", rig.domain(b) + "/DRCC1.OutWSet", "apc", -1500]])
            assert ok(res) == [{"model": 1}]         # direct-with-normal-security
            assert rig.fleet.by_id[b].node.get(S.BATTERY, 7) == -1500
            cmds = await rig.commands(b)
            assert [(c.actor, c.op, c.body, c.status) for c in cmds] == [
                ("plugin:iec61850", F.WRITE, {7: -1500}, "done")]
            audit = [a for a in await rig.bridge.store.list_audit(target=b) if a.action == "iec61850"]
            assert audit and audit[0].detail["ref"].endswith("DRCC1$CO$OutWSet")
            assert await until(lambda: rig.bridge.store.latest(b), 5)

            async def read_back():
                got = await peer(LIB, rig.port, [["read", rig.domain(b) + "/DRCC1.OutWSet.mxVal.f", "MX"]])
                return got[0].get("ok") == -1500.0
            assert await until(read_back, 20, every=0.5)
    run(main())


def test_sbo_with_enhanced_security_from_the_rust_client_starts_the_generator(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            g = dev(rig, "generator")
            res = await peer(RUST, rig.port, [["operate", rig.domain(g) + "/DRCC1.DERStr", "bool", True]])
            assert ok(res) == [{"model": 4}]         # sbo-with-enhanced-security, terminated
            cmds = await rig.commands(g)
            assert [(c.op, c.body, c.status) for c in cmds] == [(F.INVOKE, [11], "done")]

            async def running():
                got = await peer(RUST, rig.port, [["read", rig.domain(g) + "/DGEN1.GnOpSt.stVal", "ST"]])
                return got[0].get("ok") in (1, 2, 3)    # starting, synchronising, running
            assert await until(running, 30, every=0.5)
    run(main())


def test_an_operate_without_select_is_refused_and_nothing_is_queued(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            g = dev(rig, "generator")
            ref = rig.domain(g) + "/DRCC1.DERStop"
            lib = await peer(LIB, rig.port, [["oper_only", ref, "bool", True]])
            assert lib[0]["cause"] == 18              # object-not-selected
            rust = await peer(RUST, rig.port, [["oper_only", ref, "bool", True]])
            assert "error" in rust[0]
            assert await rig.commands(g) == []
    run(main())


def test_a_cancel_after_select_from_libiec61850_releases_the_selection(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            g = dev(rig, "generator")
            ref = rig.domain(g) + "/DRCC1.DERStop"
            res = ok(await peer(LIB, rig.port, [["select_cancel_oper", ref, "bool", True]]))
            # selected, cancelled, then the Oper of the same association finds no selection
            assert res == [{"select": True, "cancel": True, "operate": False, "cause": 18}]
            assert await rig.commands(g) == []
    run(main())


def test_an_abort_from_libiec61850_releases_its_selection_to_another_client(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            g = dev(rig, "generator")
            ref = rig.domain(g) + "/DRCC1.DERStop"
            other = {}

            async def after_abort():   # the aborting client's process is still running
                other["res"] = await peer(RUST, rig.port, [["operate", ref, "bool", True]])
            res = await peer(LIB, rig.port, [["select_only", ref, "bool", True], ["abort"],
                                              ["sleep", 6]], on_ready=after_abort)
            assert res[0] == {"ok": True} and "ok" in res[1], res
            assert ok(other["res"]) == [{"model": 4}]
            assert [c.body for c in await rig.commands(g)] == [[12]]
    run(main())


def test_a_time_activated_operate_is_refused_and_nothing_is_queued(tmp_path):
    """The model's Oper has no operTm (TimeActivatedOperate is not supported, and
    libiec61850's control API leaves operTm out for it); an Oper carrying one anyway
    is refused type-inconsistent, while the same Oper without it runs."""
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            b = dev(rig, "battery")
            ref = rig.domain(b) + "/DRCC1.OutWSet"
            res = await peer(LIB, rig.port, [["oper_at", ref, "apc", 1000, 30],
                                              ["operate", ref, "apc", 1000]])
            assert res[0] == {"error": "write error 25", "cause": 25}   # type-inconsistent
            assert ok(res[1:]) == [{"model": 1}]
            assert [c.status for c in await rig.commands(b)] == ["done"]
    run(main())


def test_an_object_selected_by_one_client_is_refused_to_another(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            g = dev(rig, "generator")
            ref = rig.domain(g) + "/DRCC1.DERStop"
            other = {}

            async def while_selected():
                other["res"] = await peer(RUST, rig.port, [["oper_only", ref, "bool", True],
                                                           ["operate", ref, "bool", True]])
            res = await peer(LIB, rig.port, [["select_only", ref, "bool", True], ["sleep", 8]],
                             on_ready=while_selected)
            assert res[0] == {"ok": True}
            assert all("error" in r for r in other["res"]), other   # not selected / already selected
            assert await rig.commands(g) == []
            after = await peer(RUST, rig.port, [["operate", ref, "bool", True]])   # released
            assert ok(after) == [{"model": 4}]
            assert [c.body for c in await rig.commands(g)] == [[12]]
    run(main())


def test_out_of_range_read_only_and_measurement_writes_are_refused_without_a_command(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            b = dev(rig, "battery")
            d = rig.domain(b)
            res = await peer(LIB, rig.port, [
                ["operate", d + "/DRCC1.OutWSet", "apc", 5e9],                 # beyond 1e7 W
                ["operate", d + "/DRCC1.OutWSet", "bool", True],               # not an AnalogueValue
                ["operate", d + "/MMXU1.TotW", "apc", 1],                      # no control there
                ["write", d + "/ZBAT1.WhRtg.setMag.f", "SP", "float", 5.0],    # capacity: read-only
                ["write", d + "/MMXU1.TotW.mag.f", "MX", "float", 5.0],        # a measurement
                ["write", d + "/ZBAT1.SocMinPct.setMag.f", "SP", "float", 150.0],  # > 100 %
                ["read", d + "/ZBAT1.SocPct.mag.f", "MX"]])                    # still serving
            assert res[0]["cause"] == 26               # inconsistent-parameters
            assert all("error" in r for r in res[1:6]), res
            assert isinstance(res[6]["ok"], float)
            assert await rig.commands(b) == []
            res = await peer(RUST, rig.port, [
                ["write", d + "/ZBAT1.SocMinPct.setMag.f", "SP", "float", 150.0],
                ["write", d + "/ZBAT1.SocMinPct.setMag.f", "SP", "float", 12.5]])
            assert "error" in res[0] and res[1] == {"ok": True}
            assert [(c.body, c.status) for c in await rig.commands(b)] == [({18: 125}, "done")]
            assert rig.fleet.by_id[b].node.get(S.BATTERY, 18) == 12.5
    run(main())


def test_an_fsch_schedule_set_from_libiec61850_is_pushed_to_the_device_as_a_plan(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            g = dev(rig, "generator")
            d = rig.domain(g) + "/FSCH1."
            start = int(time.time()) + 2
            res = await peer(LIB, rig.port, [
                ["write", d + "SchdPrio.setVal", "SP", "int", 2],
                ["write", d + "StrTm.setVal", "SP", "int", start],
                ["write", d + "SchdIntv.setVal", "SP", "int", 60],
                ["write", d + "NumEntr.setVal", "SP", "int", 1],
                ["write", d + "ValASG001.setMag.f", "SP", "float", 1500.0],
                ["operate", d + "SchdEnaReq", "bool", True]])
            assert ok(res)[-1] == {"model": 1}
            plans = await rig.bridge.store.list_plans(g, time.time())
            assert [(p.start, p.primacy, p.status, p.actor) for p in plans] == [
                (start, 2, "accepted", "plugin:iec61850")]

            async def running():
                got = await peer(LIB, rig.port, [["read", d + "SchdSt.stVal", "ST"],
                                                 ["read", d + "ValMV.mag.f", "MX"]])
                return [r.get("ok") for r in got] == [4, 1500.0]
            assert await until(running, 20, every=0.5)
    run(main())


# ------------------------------------------------------------------ reports and quality

def test_reports_arrive_at_both_clients_when_devices_change(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            d = rig.domain(dev(rig, "meter"))
            for name in (LIB, RUST):
                got = ok(await peer(name, rig.port, [["report", d + "/LLN0.RP.urcbAll01", 20, 2]]))[0]
                assert len(got) >= 2, name
                assert got[0]["rpt_id"] == d + "/LLN0$RP$urcbAll"
                assert got[0]["dataset"].endswith("LLN0$All")
                assert got[0]["entries"]
    run(main())


def test_a_general_interrogation_reports_every_member_of_the_data_set(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, {"meter": 1}) as rig:
            ld = rig.model.by_device[dev(rig, "meter")]
            got = ok(await peer(RUST, rig.port, [["gi", ld.domain + "/LLN0.RP.urcbAll02", 10, 1]]))[0]
            assert got and got[0]["gi"]
            assert got[0]["entries"] == len(ld.datasets["All"])
    run(main())


def test_a_brcb_replays_what_was_buffered_while_the_client_was_away(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, {"meter": 1}) as rig:
            rcb = rig.domain(dev(rig, "meter")) + "/LLN0.BR.brcbAll01"
            first = ok(await peer(RUST, rig.port, [["brcb", rcb, 10, 2, None]]))[0]
            assert len(first) >= 2
            last = first[-1]["entry"]
            await asyncio.sleep(3)                  # the meter changes; nobody listens
            back = time.time() * 1000
            again = ok(await peer(RUST, rig.port, [["brcb", rcb, 10, 2, last]]))[0]
            assert again and int(again[0]["entry"], 16) == int(last, 16) + 1   # no gap, no repeat
            assert again[0]["ts"] < back            # buffered while the client was away
    run(main())


def test_report_blocks_past_the_configured_number_are_refused_and_the_others_keep_working(
        tmp_path):
    async def main():
        async with mms_fleet(tmp_path, {"meter": 2}, report_blocks=2) as rig:
            d1, d2 = (rig.domain(d.device_id) for d in rig.fleet.devices)
            res = await peer(LIB, rig.port, [
                ["write", d1 + "/LLN0.urcbAll01.GI", "RP", "bool", False],
                ["write", d1 + "/LLN0.brcbAll01.PurgeBuf", "BR", "bool", False],
                ["write", d2 + "/LLN0.urcbAll01.GI", "RP", "bool", False],   # a third
                ["write", d1 + "/LLN0.urcbAll01.GI", "RP", "bool", False]])  # one it has
            assert [("ok" in r) for r in res] == [True, True, False, True], res
            assert res[2]["cause"] == 26   # libiec61850's IED_ERROR_TEMPORARILY_UNAVAILABLE
            got = ok(await peer(LIB, rig.port, [["report", d1 + "/LLN0.RP.urcbAll01", 20, 1]]))[0]
            assert got and got[0]["rpt_id"] == d1 + "/LLN0$RP$urcbAll"
    run(main())


def test_a_device_going_offline_shows_invalid_old_data_and_refuses_controls(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, {"meter": 1}, quiet=[("battery", "bat.quiet")]) as rig:
            d = rig.domain("bat.quiet")
            steps = [["read", d + "/MMXU1.TotW.q", "MX"], ["read", d + "/LLN0.Health.stVal", "ST"]]
            before = ok(await peer(LIB, rig.port, steps))
            assert before[0][:2] == [False, False] and before[1] == 1     # good, Ok
            await rig.bridge.presence_changed("bat.quiet", "offline")

            async def offline():
                got = ok(await peer(LIB, rig.port, steps))
                return got[0][:2] == [False, True] and got[0][7] and got[1] == 3
            assert await until(offline, 15, every=0.3)                    # invalid, oldData, Alarm
            res = await peer(LIB, rig.port, [["operate", d + "/DRCC1.OutWSet", "apc", 10]])
            assert res[0]["cause"] == 13                                  # blocked-by-health
            assert await rig.commands("bat.quiet") == []
    run(main())


# ------------------------------------------------------------------ bad input

def _raw(port, data, wait=5.0):
    """Send raw bytes; True when the server closed the connection (it may answer
    first), False when it still held it open after `wait` seconds."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while s.recv(4096):
                pass
            return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        except OSError as e:   # the server reset it before our shutdown (a loaded machine)
            if e.errno == errno.ENOTCONN:
                return True
            raise


def test_garbage_truncated_tpkt_and_stalled_clients_leave_the_server_serving(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, FLEET) as rig:
            b = dev(rig, "battery")
            d = rig.domain(b)
            loop = asyncio.get_running_loop()
            stalled = [socket.create_connection(("127.0.0.1", rig.port)) for _ in range(3)]
            try:
                for junk in (b"\x00" * 64, b"GET / HTTP/1.1\r\n\r\n", b"\x03\x00\x00\x20\x02",
                             b"\x03\x00\x00\x07\x02\xf0\x80",                  # DT before CR
                             b"\x03\x00\x00\x16\x11\xe0\x00\x00\x00\x01\x00" + b"\xff" * 11,
                             b"\x03\x00\xff\xff" + b"\x00" * 100):
                    assert await loop.run_in_executor(None, _raw, rig.port, junk), junk
                res = await peer(LIB, rig.port, [["read", d + "/ZBAT1.SocPct.mag.f", "MX"]])
                assert isinstance(res[0]["ok"], float)
                assert await rig.commands(b) == []
            finally:
                for s in stalled:
                    s.close()
    run(main())


def test_fifty_clients_at_once_are_all_served(tmp_path):
    async def main():
        async with mms_fleet(tmp_path, {"meter": 1}) as rig:
            d = rig.domain(dev(rig, "meter"))
            results = await asyncio.gather(*[
                peer(RUST, rig.port, [["read", d + "/MMXU1.TotW.mag.f", "MX"]], timeout=120)
                for _ in range(50)])
            assert all(isinstance(r[0].get("ok"), float) for r in results)
    run(main())


# ------------------------------------------------------------------ on the wire

def test_a_captured_session_decodes_as_mms_with_no_malformed_packet(tmp_path):
    import shutil
    import signal
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (tools/test.sh installs it)")

    async def main():
        async with mms_fleet(tmp_path, {"battery": 1}) as rig:
            d = rig.domain(dev(rig, "battery"))
            cap = tmp_path / "mms.pcapng"
            tshark = await asyncio.create_subprocess_exec(
                "tshark", "-i", "lo", "-f", "tcp port %d" % rig.port, "-w", str(cap),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                started = b""
                while b"Capturing on" not in started:
                    line = await asyncio.wait_for(tshark.stderr.readline(), 20)
                    if not line:
                        pytest.skip("tshark cannot capture here: %s" % started[-300:])
                    started += line
                await peer(LIB, rig.port, [
                    ["lds"], ["vars", d], ["read", d + "/ZBAT1.SocPct", "MX"],
                    ["operate", d + "/DRCC1.OutWSet", "apc", -100],
                    ["operate", d + "/ZBTC1.BatMod", "int", 3],
                    ["operate", d + "/DRCC1.OutWSet", "apc", 5e9]])
                await asyncio.sleep(1)
            finally:
                tshark.send_signal(signal.SIGINT)
                await asyncio.wait_for(tshark.wait(), 20)
            decoded = subprocess.run(
                ["tshark", "-r", str(cap), "-d", "tcp.port==%d,tpkt" % rig.port, "-V"],
                capture_output=True, text=True, timeout=60).stdout
            assert "initiate-RequestPDU" in decoded and "initiate-ResponsePDU" in decoded
            assert decoded.count("confirmed-RequestPDU") >= 8
            assert "informationReport" in decoded       # LastApplError, CommandTermination
            assert "Malformed" not in decoded and "malformed" not in decoded
    run(main())
