"""MQTT telemetry is acknowledged to the broker (PUBACK) only once stored
(cloud_bridge/mqtt_link.py: the group commit's callback sends the PUBACK), against
a real mosquitto and a real paho device; the broker's log shows the bridge's PUBACKs.
"""
import asyncio
import time

import paho.mqtt.client as mqtt

from adversarial_peers import HP, announce, bridge, notify
from spot.cloud_bridge.store import StoreError
from waiting import until


def test_mqtt_telemetry_the_store_refuses_gets_no_puback_and_the_next_one_is_stored(
        tmp_path, broker):
    def pubacks():
        return broker.log_text().count("Received PUBACK from spot-bridge")

    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hp-mq",
                                 protocol=mqtt.MQTTv311)
            device.connect("127.0.0.1", broker.port)
            device.loop_start()
            t = int(time.time()) - 60

            async def publish(topic, payload, retain=False):
                info = device.publish(topic, payload, qos=1, retain=retain)
                await asyncio.to_thread(info.wait_for_publish, 5)
                assert info.is_published()   # the broker acknowledged the device

            async def stored():
                return await parts.store.history("hp-mq", HP, 11)
            try:
                await publish("spot/v1/hp-mq/announce", announce("hp-mq"), retain=True)
                await until(lambda: "hp-mq" in parts.bridge.known, timeout=15)
                await until(lambda: pubacks() >= 1, timeout=15)   # the birth's
                await publish("spot/v1/hp-mq/10/up", notify(t=t, values={11: 1}))
                await until(lambda: pubacks() >= 2, timeout=15)
                assert await stored() == [(t, 1)]
                acked = pubacks()

                async def failing(frames):
                    raise StoreError("disk full (test)")
                add, parts.store.add_telemetry_frames = parts.store.add_telemetry_frames, failing
                await publish("spot/v1/hp-mq/10/up", notify(t=t + 1, values={11: 2}))
                await until(lambda: parts.bridge.metrics.value(
                    "telemetry_not_stored", transport="mqtt") == 1, timeout=15)
                parts.store.add_telemetry_frames = add
                await publish("spot/v1/hp-mq/10/up", notify(t=t + 2, values={11: 3}))
                await until(lambda: pubacks() >= acked + 1, timeout=15)
                assert await stored() == [(t, 1), (t + 2, 3)]
                assert pubacks() == acked + 1   # none for the frame not stored
            finally:
                device.loop_stop()
                device.disconnect()
    asyncio.run(asyncio.wait_for(main(), 60))
