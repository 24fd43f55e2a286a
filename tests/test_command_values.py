"""A command's answer in the API speaks names and SI units like every other
answer, with the wire form kept beside it (HTTP API on 127.0.0.1, in-process
simulated heat pump)."""
from test_http_api import scenario
from spot.core.services import HEAT_PUMP

FLOW_SETPOINT = 7


def test_a_done_read_gives_its_values_by_name_in_si_units_and_keeps_the_wire_form(tmp_path):
    async def body(api):
        _, cmd = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": "heat_pump", "op": "read", "objects": ["flow_setpoint", "sg_ready"]})
        done = await api.finished(cmd["id"])
        node = api.devices["hp-0001"].node
        wire = node.wire(HEAT_PUMP, FLOW_SETPOINT)
        assert done["result"]["7"] == wire
        assert done["values"]["flow_setpoint"] == {"value": wire / 10, "unit": "Cel"}
        assert done["values"]["sg_ready"]["value"] == node.wire(HEAT_PUMP, 6)
    scenario(tmp_path, body)


def test_a_done_subscribe_gives_its_subscription_id_and_current_values(tmp_path):
    async def body(api):
        _, cmd = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": "heat_pump", "op": "subscribe", "objects": ["flow_temp"]})
        done = await api.finished(cmd["id"])
        assert done["status"] == "done" and done["subscription"] > 0
        assert done["values"]["flow_temp"]["unit"] == "Cel"
    scenario(tmp_path, body)


def test_a_write_has_no_values(tmp_path):
    async def body(api):
        _, cmd = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": "heat_pump", "op": "write", "values": {"flow_setpoint": 45}})
        done = await api.finished(cmd["id"])
        assert done["status"] == "done" and done["values"] is None
    scenario(tmp_path, body)


def test_the_device_lists_its_subscriptions_with_their_owners(tmp_path):
    async def body(api):
        _, cmd = await api.post("/api/v1/devices/hp-0001/commands", {
            "service": "heat_pump", "op": "subscribe", "objects": ["flow_temp"]})
        done = await api.finished(cmd["id"])
        status, subs = await api.get("/api/v1/devices/hp-0001/subscriptions")
        assert status == 200
        assert subs == [{"service": "heat_pump", "service_id": HEAT_PUMP,
                         "subscription": done["subscription"], "actor": "operator"}]
    scenario(tmp_path, body)
