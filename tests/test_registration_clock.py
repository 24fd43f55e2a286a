"""Registering takes one exchange: the bridge's time comes in the RESULT to the
ANNOUNCE of a device that sets flag bit 1 (spec section 3.1), and only a device
without it gets the clock WRITE. A real `spot bridge` process and devices running
the code a board runs (core.coap_binding.CoapDevice) over CoAP."""
import asyncio
import time

from bridge_process import BridgeProcess
from spec_examples import examples
from test_bridge_faults import serve
from test_device_clock import board_clock, wall_error
from test_bridge_service import Clock, make_bridge
from waiting import until
from spot.core import frame as F
from spot.core.node import Node, FLAG_CLOCK, A_FLAGS
from spot.core.services import HEAT_PUMP, TIME
from spot.ports.cpython.simulator import SimDevice
from spot.profiles import heat_pump

COMMAND = {"service": "heat_pump", "op": "write", "values": {"sg_ready": 2}}


class OldStyleNode(Node):
    """Test double of a node built before flag bit 1: its ANNOUNCE never carries it."""

    def announce(self, mid=0, bridge=None):
        return Node.announce(self, mid)


def requests_to(server):
    """The (op, service) of every request frame the device's CoAP server is handed."""
    seen = []
    handler = server.device.ep.handler

    def recording(req, *args):
        head = F.peek(req.payload or b"")
        if head is not None:
            seen.append(head[1:])
        return handler(req, *args)
    server.device.ep.handler = recording
    return seen


async def command_done(bridge, device):
    """POST COMMAND for device and wait until the bridge reports it done."""
    status, cmd = await asyncio.to_thread(bridge.call, "POST",
                                          "/api/v1/devices/%s/commands" % device, COMMAND)
    assert status == 202, cmd

    async def done():
        _, got = await asyncio.to_thread(bridge.call, "GET", "/api/v1/commands/%d" % cmd["id"])
        return got["status"] == "done"
    assert await until(done), "the command was not delivered"


def with_bridge(tmp_path, scenario):
    bridge = BridgeProcess(tmp_path / "bridge").start()
    try:
        asyncio.run(scenario(bridge))
    finally:
        bridge.stop()


def test_a_device_setting_flag_bit_1_gets_its_clock_from_the_registration_and_no_write(tmp_path):
    async def scenario(bridge):
        node = Node([heat_pump], "hp-new")
        server = await serve(node, bridge.coap, board_clock)
        try:
            seen = requests_to(server)
            assert await until(lambda: node.time_known)
            assert server.device.registrations == 1 and wall_error(node, server) < 5
            await command_done(bridge, "hp-new")   # a clock WRITE would have gone first
            assert seen == [(F.WRITE, HEAT_PUMP)]
            assert await asyncio.to_thread(bridge.metric, "clock_sets_total",
                                           status="done") == 0
        finally:
            server.close()
    with_bridge(tmp_path, scenario)


def test_a_device_without_flag_bit_1_still_gets_the_clock_write(tmp_path):
    async def scenario(bridge):
        node = OldStyleNode([heat_pump], "hp-old")
        server = await serve(node, bridge.coap, board_clock)
        try:
            seen = requests_to(server)
            await command_done(bridge, "hp-old")
            assert seen == [(F.WRITE, TIME), (F.WRITE, HEAT_PUMP)]
            assert node.time_known and wall_error(node, server) < 5
            assert await asyncio.to_thread(bridge.metric, "clock_sets_total",
                                           status="done") == 1
        finally:
            server.close()
    with_bridge(tmp_path, scenario)


def test_a_simulator_on_its_own_time_does_not_set_flag_bit_1_and_keeps_its_clock(tmp_path):
    t_2024 = 1704067200
    sim = SimDevice("heat_pump", "hp-sim", t0=t_2024, keep_clock=True)
    assert A_FLAGS not in F.decode(sim.node.announce(1, ("127.0.0.1", 5683)))[3]

    async def scenario(bridge):
        server = await serve(sim.node, bridge.coap, lambda ms: t_2024)
        try:
            seen = requests_to(server)
            await command_done(bridge, "hp-sim")
            assert seen == [(F.WRITE, TIME), (F.WRITE, HEAT_PUMP)]   # the WRITE, refused
            assert sim.node.unix(t_2024) == t_2024
            assert await asyncio.to_thread(bridge.metric, "clock_sets_total",
                                           status="refused") == 1
        finally:
            server.close()
    with_bridge(tmp_path, scenario)


def test_the_result_to_an_announce_with_flag_bit_1_is_the_spec_example(tmp_path):
    [example] = [e for e in examples() if e["name"] == "registration-result-with-clock"]

    async def main():
        bridge, local = await make_bridge(tmp_path, Clock(1700000000))
        try:
            announce = F.encode(F.ANNOUNCE, 0, 7, {0: "hp-1", 1: [[2, 1, 0], [16, 1, 0]],
                                                   3: FLAG_CLOCK})
            reply = await bridge.device_frame(local.name, None, announce)
            assert reply == bytes.fromhex(example["hex"])
            assert "hp-1" not in bridge.clocks.due     # no WRITE to follow
        finally:
            await bridge.stop()
    asyncio.run(main())


def test_a_clock_in_the_result_is_rounded_up_to_the_next_second(tmp_path):
    async def main():
        bridge, local = await make_bridge(tmp_path, Clock(1700000000.25))
        try:
            announce = F.encode(F.ANNOUNCE, 0, 7, {0: "hp-1", 1: [[2, 1, 0]], 3: FLAG_CLOCK})
            reply = await bridge.device_frame(local.name, None, announce)
            assert F.decode(reply)[3] == {1: 1700000001}
        finally:
            await bridge.stop()
    asyncio.run(main())


def test_over_a_transport_that_does_not_answer_announces_flag_bit_1_is_ignored(tmp_path):
    async def main():
        bridge, local = await make_bridge(tmp_path, Clock(1700000000))
        local.answers_announce = False   # as the MQTT link: a birth has no RESULT
        try:
            announce = F.encode(F.ANNOUNCE, 0, 7, {0: "hp-1", 1: [[2, 1, 0]], 3: FLAG_CLOCK})
            reply = await bridge.device_frame(local.name, None, announce)
            assert 1 not in F.decode(reply)[3] and bridge.clocks.due.get("hp-1") == "registered"
        finally:
            await bridge.stop()
    asyncio.run(main())


def test_over_mqtt_a_birth_with_flag_bit_1_still_gets_the_clock_write(tmp_path, broker):
    import paho.mqtt.client as mqtt
    from adversarial_peers import bridge

    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port):
            got = []
            device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hp-mq",
                                 protocol=mqtt.MQTTv311)
            device.on_message = lambda c, u, m: got.append((m.topic, m.payload))
            device.connect("127.0.0.1", broker.port)
            device.loop_start()
            try:
                device.subscribe("spot/v1/hp-mq/+/down/#", qos=1)
                birth = F.encode(F.ANNOUNCE, 0, 1, {0: "hp-mq", 1: [[2, 1, 0], [16, 1, 0]],
                                                    3: FLAG_CLOCK})
                device.publish("spot/v1/hp-mq/announce", birth, qos=1, retain=True)
                assert await until(lambda: got, timeout=15), "no clock WRITE over MQTT"
                topic, frame = got[0]
                op, sid, _, body = F.decode(frame)
                assert topic.startswith("spot/v1/hp-mq/02/down") and (op, sid) == (F.WRITE, TIME)
                assert abs(body[1] - time.time()) < 5
            finally:
                device.loop_stop()
                device.disconnect()
    asyncio.run(asyncio.wait_for(main(), 60))
