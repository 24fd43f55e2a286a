"""The IEC 61850 model of the fleet (cloud_bridge/iec61850/model.py) and the
ACSI operations on it (acsi.py) against a real bridge with simulated devices."""
import asyncio
import re
from types import SimpleNamespace

import pytest

from iec61850_rig import bridge_with_devices, FakeRefusingDevice
from spot.cloud_bridge.iec61850 import acsi as A
from spot.cloud_bridge.iec61850 import model as X
from spot.cloud_bridge.iec61850.mapping import LN_CLASSES, UNMAPPED_TYPES
from spot.core import frame as F
from spot.core import model as M
from spot.core import services as S
from spot.profiles import registry, mappings_doc
from spot.ports.cpython.simulator import SimDevice

ALL = [[sid, 1, 0] for sid in registry.SERVICES]


def dev(id, services=ALL, presence="online"):
    return SimpleNamespace(id=id, services=services, presence=presence, groups=[])


def run(coro):
    asyncio.run(asyncio.wait_for(coro, 60))


# ------------------------------------------------------------------ naming

def test_a_device_id_that_is_an_identifier_is_its_ld_instance():
    assert X.ld_inst("hp1") == "hp1"


def test_an_id_that_is_no_identifier_is_sanitised_with_a_hash_and_stays_valid():
    inst = X.ld_inst("7-heat.pump/ü")
    assert re.fullmatch(r"[A-Za-z][0-9A-Za-z_]*", inst)
    assert inst == X.ld_inst("7-heat.pump/ü")        # deterministic
    assert inst != X.ld_inst("7-heat.pump/u")        # same sanitised form, other hash


def test_ld_names_never_collide_and_fit_64_characters():
    ids = ["a-b", "a_b", "a.b", "x" * 100, "x" * 101, "A_b"]
    model = X.build_model([dev(i, [[S.METER, 1, 0]]) for i in ids])
    assert len(model.lds) == len(ids)
    assert all(len(d) <= 64 for d in model.lds)
    again = X.build_model([dev(i, [[S.METER, 1, 0]]) for i in reversed(ids)])
    assert list(again.lds) == list(model.lds)


def test_ied_name_must_be_an_identifier():
    with pytest.raises(ValueError):
        X.build_model([], ied_name="1bad name")


# ------------------------------------------------------------------ structure

def test_every_ld_has_lln0_and_lphd_with_behaviour_health_and_name_plate():
    model = X.build_model([dev("d1"), dev("d2", [[S.METER, 1, 0]])])
    for ld in model.lds.values():
        assert list(ld.lns)[:2] == ["LLN0", "LPHD1"]
        assert {"Beh", "Health", "NamPlt"} <= set(ld.lns["LLN0"].dos)
        assert {"PhyNam", "PhyHealth", "Proxy"} <= set(ld.lns["LPHD1"].dos)


def test_every_profile_object_is_in_the_model_once_or_of_a_type_without_counterpart():
    ld = X.build_model([dev("all")]).lds["SPOTall"]
    shown = X.points(ld)
    for sid in registry.SERVICES:
        for row in registry.by_service(sid).OBJECTS:
            key = (sid, row[M.ID])
            if row[M.TYPE] in UNMAPPED_TYPES:
                assert key not in shown, key
            else:
                assert len(shown.get(key, [])) == 1, (registry.SERVICES[sid], row[M.NAME])


def test_the_model_uses_the_logical_nodes_and_data_objects_docs_profiles_md_names():
    ld = X.build_model([dev("all")]).lds["SPOTall"]
    shown = X.points(ld)
    checked = 0
    for (sid, oid), (iec, _) in mappings_doc.OBJECTS.items():
        m = re.match(r"([A-Z]{4})\.([A-Za-z]+)", iec)   # concrete names, not "nearest:"
        if m is None or (sid, oid) not in shown:
            continue
        item = shown[(sid, oid)][0][0]
        ln, _, do = item.split("$")[:3]
        assert (re.sub(r"\d+$", "", ln), do) == m.groups(), (iec, item)
        checked += 1
    assert checked > 80


def test_names_are_valid_61850_names():
    ld = X.build_model([dev("all")]).lds["SPOTall"]
    for ln in ld.lns.values():
        assert ln.lnclass in LN_CLASSES and len(ln.lnclass) == 4
        for do in ln.dos.values():
            assert re.fullmatch(r"[A-Z][A-Za-z0-9]{0,11}", do.name), do.name
    assert all(len(n) <= 64 for n in X.name_list(ld))


def test_local_extensions_are_marked_and_standard_classes_are_not():
    ld = X.build_model([dev("all")]).lds["SPOTall"]
    assert ld.lns["ZHPU1"].local and ld.lns["ZEMS1"].local
    assert not ld.lns["MMXU1"].local and not ld.lns["DRCC1"].local
    assert ld.lns["ZBAT1"].dos["SocPct"].local
    assert not ld.lns["MMXU1"].dos["TotW"].local


def test_mms_names_are_ln_fc_do_da_and_the_name_list_holds_every_level():
    ld = X.build_model([dev("m", [[S.METER, 1, 0]])]).lds["SPOTm"]
    names = X.name_list(ld)
    for n in ("MMXU1", "MMXU1$MX", "MMXU1$MX$TotW", "MMXU1$MX$TotW$mag", "MMXU1$MX$TotW$mag$f",
              "MMXU1$MX$PhV$phsB$cVal$mag$f", "XCBR1$CO$Pos$Oper$ctlVal", "LLN0$ST$Beh$stVal"):
        assert n in names
    assert names == sorted(names)


def test_controls_have_a_control_model_and_settings_are_in_sp():
    ld = X.build_model([dev("b", [[S.BATTERY, 1, 0]])]).lds["SPOTb"]
    setpoint = ld.lns["DRCC1"].dos["OutWSet"]
    assert setpoint.cdc == "APC" and setpoint.ctl_model == 1 and setpoint.point.oid == 7
    assert ld.lns["ZBAT1"].dos["SocMinPct"].cdc == "ASG"
    assert X.find(X.build_model([dev("b", [[S.BATTERY, 1, 0]])]), "SPOTb",
                  "ZBAT1$SP$SocMinPct$setMag$f").obj.point.oid == 18


def test_fixed_data_sets_per_ln_and_report_blocks_on_the_whole_ld():
    ld = X.build_model([dev("m", [[S.METER, 1, 0]])]).lds["SPOTm"]
    assert ("MMXU1", "MX", "TotW") in ld.datasets["MMXU1"]
    assert set(ld.datasets["All"]) >= set(ld.datasets["MMTR1"])
    assert {(r.name, r.buffered) for r in ld.rcbs} == {("urcbAll", False), ("brcbAll", True)}


# ------------------------------------------------------------------ values

def test_values_come_from_the_store_in_si_with_good_quality_and_their_time():
    ld = X.build_model([dev("m", [[S.METER, 1, 0]])]).lds["SPOTm"]
    v = X.values(ld, {(S.METER, 3): (2301, 1000.0), (S.METER, 23): (True, 990.0)}, "online", 2000)
    assert v["MMXU1$MX$AvPhVPhs$mag$f"] == pytest.approx(230.1)
    assert v["MMXU1$MX$AvPhVPhs$q"] == X.Q_GOOD
    assert v["MMXU1$MX$AvPhVPhs$t"] == 1000.0
    assert v["XCBR1$ST$Pos$stVal"] == X.DBPOS_ON


def test_a_value_never_received_is_invalid():
    ld = X.build_model([dev("m", [[S.METER, 1, 0]])]).lds["SPOTm"]
    v = X.values(ld, {}, "online", 2000)
    assert v["MMXU1$MX$TotW$q"] == X.Q_INVALID


def test_an_offline_device_shows_invalid_old_data_and_health_alarm():
    ld = X.build_model([dev("m", [[S.METER, 1, 0]])]).lds["SPOTm"]
    v = X.values(ld, {(S.METER, 1): (500, 1000.0)}, "offline", 2000)
    assert v["MMXU1$MX$TotW$q"] == X.Q_INVALID | X.Q_OLD_DATA
    assert X.quality_bits(v["MMXU1$MX$TotW$q"])[:2] == [False, True]   # validity invalid
    assert X.quality_bits(v["MMXU1$MX$TotW$q"])[7]                      # oldData
    assert v["LLN0$ST$Health$stVal"] == 3


def test_to_spot_checks_type_and_range_like_the_device_would():
    ld = X.build_model([dev("b", [[S.BATTERY, 1, 0]])]).lds["SPOTb"]
    p = ld.lns["ZBAT1"].dos["SocMinPct"].point
    assert X.to_spot(p, 12.5) == 125
    with pytest.raises(Exception):
        X.to_spot(p, 101.0)
    with pytest.raises(Exception):
        X.to_spot(p, "12")


# ------------------------------------------------------------------ ACSI on a bridge

def _domain(acsi, device):
    return acsi.model.by_device[device].domain


def test_directories_and_reads_follow_the_bridge_registry_and_store(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("battery", "bat-1"), ("meter", "m1")) as (
                bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            assert sorted(acsi.server_directory()) == sorted(
                X.ld_inst(i) and "SPOT" + X.ld_inst(i) for i in ("bat-1", "m1"))
            dom = _domain(acsi, "bat-1")
            assert "ZBAT1" in acsi.ld_directory(dom)
            assert "SocPct" in acsi.ln_directory(dom, "ZBAT1")
            latest = await bridge.store.latest("bat-1")
            soc_wire = latest[(S.BATTERY, 6)][0]
            assert await acsi.read(dom, "ZBAT1$MX$SocPct$mag$f") == pytest.approx(soc_wire / 10)
            whole = await acsi.read(dom, "ZBAT1$MX$SocPct")
            assert whole["mag"]["f"] == pytest.approx(soc_wire / 10) and whole["q"] == X.Q_GOOD
            with pytest.raises(A.AcsiError) as e:
                await acsi.read(dom, "ZBAT1$MX$Nothing")
            assert e.value.code == A.OBJECT_NON_EXISTENT
    run(main())


def test_operate_sends_a_spot_write_the_device_follows_and_the_command_is_logged(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("battery", "bat-1")) as (bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            cmd = await acsi.operate(_domain(acsi, "bat-1"), "DRCC1$CO$OutWSet$Oper", {"f": -1500.0})
            assert cmd.status == "done" and cmd.actor == "plugin:iec61850"
            assert cmd.op == F.WRITE and cmd.body == {7: -1500}
            assert devs["bat-1"].node.get(S.BATTERY, 7) == -1500
    run(main())


def test_an_action_control_invokes_the_spot_action(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("generator", "g1")) as (bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            cmd = await acsi.operate(_domain(acsi, "g1"), "DRCC1$CO$DERStr", True)
            assert cmd.op == F.INVOKE and cmd.body == [11] and cmd.status == "done"
            with pytest.raises(A.ControlRefused) as e:
                await acsi.operate(_domain(acsi, "g1"), "DRCC1$CO$DERStr", False)
            assert e.value.add_cause == A.ADD_INCONSISTENT_PARAMETERS
    run(main())


def test_out_of_range_wrong_type_and_read_only_controls_are_refused_and_nothing_is_queued(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("pv_inverter", "pv1")) as (bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            dom = _domain(acsi, "pv1")
            for item, val, cause in (("DWMX1$CO$WMaxSptPct", 150.0, A.ADD_INCONSISTENT_PARAMETERS),
                                     ("DWMX1$CO$WMaxSptPct", "x", A.ADD_INCONSISTENT_PARAMETERS),
                                     ("MMXU1$CO$TotW", 1.0, A.ADD_NOT_SUPPORTED),
                                     ("DWMX1$MX$WMaxSptPct", 1.0, A.ADD_NOT_SUPPORTED)):
                with pytest.raises(A.ControlRefused) as e:
                    await acsi.operate(dom, item, val)
                assert e.value.add_cause == cause, item
            assert await bridge.store.list_commands("pv1") == []
    run(main())


def test_a_device_refusing_a_write_gives_a_negative_answer_with_its_cause(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path) as (bridge, ctx, local, devs):
            import time
            fake = FakeRefusingDevice(SimDevice("battery", "bat-r", seed=1, t0=int(time.time())))
            await local.connect("bat-r", fake)
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            dom = _domain(acsi, "bat-r")
            with pytest.raises(A.ControlRefused) as e:
                await acsi.operate(dom, "DRCC1$CO$OutWSet", {"f": 100.0})
            assert e.value.add_cause == A.ADD_INCONSISTENT_PARAMETERS
            with pytest.raises(A.AcsiError) as e:
                await acsi.write(dom, "ZBAT1$SP$SocMinPct$setMag$f", 10.0)
            assert e.value.code == A.OBJECT_VALUE_INVALID
            assert fake.writes == 2
            assert [c.status for c in await bridge.store.list_commands("bat-r")] == ["error", "error"]
    run(main())


def test_an_offline_device_is_refused_at_once_and_a_silent_one_times_out(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("battery", "b1"), ("battery", "b2")) as (
                bridge, ctx, local, devs):
            acsi = A.Acsi(ctx, control_timeout=1.0)
            await acsi.refresh()
            await bridge.presence_changed("b1", "offline")
            with pytest.raises(A.ControlRefused) as e:
                await acsi.operate(_domain(acsi, "b1"), "DRCC1$CO$OutWSet", {"f": 1.0})
            assert e.value.add_cause == A.ADD_BLOCKED_BY_HEALTH
            with pytest.raises(A.AcsiError) as e:
                await acsi.write(_domain(acsi, "b1"), "ZBAT1$SP$SocMinPct$setMag$f", 10.0)
            assert e.value.code == A.TEMPORARILY_UNAVAILABLE
            assert await bridge.store.list_commands("b1") == []
            local.asleep.add("b2")
            with pytest.raises(A.ControlRefused) as e:
                await acsi.operate(_domain(acsi, "b2"), "DRCC1$CO$OutWSet", {"f": 1.0})
            assert e.value.add_cause == A.ADD_TIME_LIMIT_OVER
    run(main())


def test_set_data_values_writes_a_setting_and_refuses_a_read_only_one(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("battery", "b1")) as (bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            dom = _domain(acsi, "b1")
            cmd = await acsi.write(dom, "ZBAT1$SP$SocMinPct$setMag$f", 15.0)
            assert cmd.body == {18: 150} and devs["b1"].node.get(S.BATTERY, 18) == 15.0
            with pytest.raises(A.AcsiError) as e:
                await acsi.write(dom, "ZBAT1$SP$WhRtg$setMag$f", 5.0)     # capacity: read-only
            assert e.value.code == A.OBJECT_ACCESS_DENIED
            with pytest.raises(A.AcsiError) as e:
                await acsi.write(dom, "MMXU1$MX$TotW$mag$f", 5.0)
            assert e.value.code == A.OBJECT_ACCESS_DENIED
    run(main())


def test_a_monitor_role_may_not_control(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("battery", "b1"), role="monitor") as (
                bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            with pytest.raises(A.ControlRefused) as e:
                await acsi.operate(_domain(acsi, "b1"), "DRCC1$CO$OutWSet", {"f": 1.0})
            assert e.value.add_cause == A.ADD_NO_ACCESS_AUTHORITY
            assert await bridge.store.list_commands("b1") == []
    run(main())


# ------------------------------------------------------------------ schedules (FSCH)

def test_a_device_taking_plans_gets_an_fsch_on_its_set_point():
    ld = X.build_model([dev("b", [[S.BATTERY, 1, 0], [S.PLANS, 1, 0]])]).lds["SPOTb"]
    fsch = ld.lns["FSCH1"]
    assert (fsch.target.sid, fsch.target.oid) == (S.BATTERY, 7)
    assert {"SchdSt", "ValMV", "SchdPrio", "StrTm", "SchdIntv", "NumEntr", "ValASG001",
            "SchdEnaReq", "SchdDsaReq"} <= set(fsch.dos)
    assert "FSCH1" not in X.build_model([dev("b", [[S.BATTERY, 1, 0]])]).lds["SPOTb"].lns


def test_an_fsch_schedule_becomes_one_spot_plan_of_the_set_point(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("battery", "b1")) as (bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            d = _domain(acsi, "b1")
            import time
            start = int(time.time()) + 5
            for do, da, v in (("SchdPrio", "setVal", 3), ("StrTm", "setVal", start),
                              ("SchdIntv", "setVal", 900), ("NumEntr", "setVal", 2),
                              ("ValASG001", "setMag$f", -1000.0), ("ValASG002", "setMag$f", 500.0)):
                assert await acsi.write(d, "FSCH1$SP$%s$%s" % (do, da), v) is None
            assert await bridge.store.list_commands("b1") == []      # kept, nothing sent yet
            with pytest.raises(A.AcsiError):
                await acsi.write(d, "FSCH1$SP$ValASG003$setMag$f", 5e9)   # beyond the set-point
            cmd = await acsi.operate(d, "FSCH1$CO$SchdEnaReq", True)
            assert cmd.status == "done" and cmd.actor == "plugin:iec61850"
            plans = await bridge.store.list_plans("b1", time.time())
            assert [(p.start, p.expiry, p.primacy, p.status) for p in plans] == [
                (start, start + 1800, 3, "accepted")]
            assert plans[0].entries == {S.BATTERY: {7: [start, 900, [-1000, 500]]}}
            values = await acsi.ld_values(d)
            assert values["FSCH1$ST$SchdSt$stVal"] == 3               # ready: starts later
            await acsi.operate(d, "FSCH1$CO$SchdDsaReq", True)
            plans = await bridge.store.list_plans("b1", time.time(), include_inactive=True)
            assert plans[0].status == "cancelled"
    run(main())


def test_an_incomplete_schedule_is_refused_and_nothing_is_sent(tmp_path):
    async def main():
        async with bridge_with_devices(tmp_path, ("battery", "b1")) as (bridge, ctx, local, devs):
            acsi = A.Acsi(ctx)
            await acsi.refresh()
            d = _domain(acsi, "b1")
            await acsi.write(d, "FSCH1$SP$NumEntr$setVal", 2)
            with pytest.raises(A.ControlRefused) as e:
                await acsi.operate(d, "FSCH1$CO$SchdEnaReq", True)
            assert e.value.add_cause == A.ADD_INCONSISTENT_PARAMETERS
            with pytest.raises(A.AcsiError):
                await acsi.write(d, "FSCH1$SP$NumEntr$setVal", 99)
            assert await bridge.store.list_commands("b1") == []
    run(main())
