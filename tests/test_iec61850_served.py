"""The served model (cloud_bridge/plugins/iec61850/served.py): one template tree
per LD shape, each LD's own values, read through open61850's data types.
The end-to-end behaviour against real clients is in test_iec61850_mms.py."""
import time
from types import SimpleNamespace

from open61850.data import FloatData, VisibleStringData
from open61850.mms.pdu import ObjectName
from open61850.server.model import ACCESS_OBJECT_NON_EXISTENT, ACCESS_TEMPORARILY_UNAVAILABLE

from spot.cloud_bridge.iec61850 import model as X
from spot.cloud_bridge.plugins.iec61850.served import ServedFleet
from spot.core import services as S

BATTERY = [[S.BATTERY, 1, 0], [S.DEVICE_INFO, 1, 0]]
METER = [[S.METER, 1, 0]]
SOC = "ZBAT1$MX$SocPct$mag$f"


def dev(id, services):
    return SimpleNamespace(id=id, services=services, groups=[])


def fleet(*devices):
    model = X.build_model(list(devices))
    served = ServedFleet("SPOT", "127.0.0.1", 0)
    served.add(model.lds.values())
    return model, served


def push(model, served, device, soc, presence="online"):
    ld = model.by_device[device]
    now = time.time()
    return served.push(ld.domain, X.values(ld, {(S.BATTERY, 6): (soc, now)}, presence, now))


def test_lds_of_the_same_services_share_one_template_and_model_nodes():
    model, served = fleet(dev("b1", BATTERY), dev("b2", BATTERY), dev("m1", METER))
    assert len(served.shapes) == 2
    assert served.devices["SPOTb1"].shape is served.devices["SPOTb2"].shape
    assert model.lds["SPOTb1"].lns is model.lds["SPOTb2"].lns
    assert model.lds["SPOTb1"].lns is not model.lds["SPOTm1"].lns


def test_each_ld_reads_its_own_values():
    model, served = fleet(dev("b1", BATTERY), dev("b2", BATTERY))
    push(model, served, "b1", 420)
    push(model, served, "b2", 730)
    one = served.read(ObjectName(SOC, "SPOTb1"))
    two = served.read(ObjectName(SOC, "SPOTb2"))
    assert isinstance(one, FloatData) and isinstance(two, FloatData)
    assert one.value != two.value


def test_an_ld_whose_values_are_not_loaded_yet_reads_temporarily_unavailable():
    model, served = fleet(dev("b1", BATTERY))
    assert not served.loaded("SPOTb1")
    assert served.read(ObjectName(SOC, "SPOTb1")) == ACCESS_TEMPORARILY_UNAVAILABLE
    push(model, served, "b1", 420)
    assert served.loaded("SPOTb1")
    assert isinstance(served.read(ObjectName(SOC, "SPOTb1")), FloatData)


def test_unknown_domains_and_items_do_not_exist():
    model, served = fleet(dev("b1", BATTERY))
    push(model, served, "b1", 420)
    assert served.read(ObjectName(SOC, "SPOTnobody")) == ACCESS_OBJECT_NON_EXISTENT
    assert served.read(ObjectName("ZBAT1$MX$Nothing", "SPOTb1")) == ACCESS_OBJECT_NON_EXISTENT
    assert served.node(ObjectName("NOLN1", "SPOTb1")) is None


def test_a_push_reports_only_the_leaves_that_changed():
    model, served = fleet(dev("b1", BATTERY))
    first = push(model, served, "b1", 420)
    assert len(first) == len(served.devices["SPOTb1"].shape.items)
    again = push(model, served, "b1", 421)
    assert SOC in {leaf.item for leaf in again}
    assert all(leaf.domain == "SPOTb1" for leaf in again)
    assert len(again) < len(first)


def test_a_value_that_does_not_fit_its_type_keeps_the_one_served():
    model, served = fleet(dev("b1", BATTERY))
    push(model, served, "b1", 420)
    before = served.read(ObjectName(SOC, "SPOTb1"))
    ld = model.by_device["b1"]
    bad = X.values(ld, {}, "online", time.time())
    bad[SOC] = "not a number"
    changed = served.push(ld.domain, bad)
    assert SOC not in {leaf.item for leaf in changed}
    assert served.read(ObjectName(SOC, "SPOTb1")) == before


def test_report_control_blocks_name_their_own_ld():
    model, served = fleet(dev("b1", BATTERY), dev("b2", BATTERY))
    for domain in ("SPOTb1", "SPOTb2"):
        dat_set = served.read(ObjectName("LLN0$RP$urcbAll01$DatSet", domain))
        rpt_id = served.read(ObjectName("LLN0$BR$brcbAll01$RptID", domain))
        assert dat_set == VisibleStringData(domain + "/LLN0$All")
        assert rpt_id.value.startswith(domain + "/")


def test_a_data_set_of_an_ld_names_members_of_that_ld():
    model, served = fleet(dev("b1", BATTERY), dev("b2", BATTERY))
    members = served.data_sets.get(ObjectName("LLN0$All", "SPOTb2"))
    assert members and all(m.domain == "SPOTb2" for m in members)
    assert served.data_sets.get(ObjectName("LLN0$Nothing", "SPOTb2")) is None


def test_writes_of_the_engines_stay_with_their_ld():
    model, served = fleet(dev("b1", BATTERY), dev("b2", BATTERY))
    node = served.node(ObjectName("LLN0$RP$urcbAll01$IntgPd", "SPOTb1"))
    before = served.read(ObjectName("LLN0$RP$urcbAll01$IntgPd", "SPOTb2"))
    assert node.assign(type(before)(before.value + 500))
    assert served.read(ObjectName("LLN0$RP$urcbAll01$IntgPd", "SPOTb1")).value == before.value + 500
    assert served.read(ObjectName("LLN0$RP$urcbAll01$IntgPd", "SPOTb2")) == before
