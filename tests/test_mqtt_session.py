"""The bridge's MQTT session on asyncio (cloud_bridge/mqtt_session.py, core's sans-I/O
client): against a real mosquitto, telemetry or a birth not stored is not acknowledged
and the session reconnects for the broker to deliver it again, a message over the size limit is
refused visibly and acknowledged (it never comes back), a subscription the broker refused
is asked for again until granted, the link comes back after the broker
restarts, mqtts:// with a CA; against FakeBroker (a test double), a malformed packet
closes the connection with a clear error (so does a SUBACK without a code for
every filter), an acknowledgement never crosses connections, and only refused filters
are asked for again, with growing delays."""
import asyncio
import contextlib
import logging
import time

import paho.mqtt.client as mqtt

from adversarial_peers import HP, announce, bridge, notify
from mosquitto import Broker, make_ca_and_server_cert, mosquitto_pub
from netutil import free_tcp_port
from spot.cloud_bridge.mqtt_session import MqttSession
from spot.cloud_bridge.store import StoreError
from spot.core import frame as F
from spot.core import mqtt as M
from waiting import until

QUICK = (0.05, 0.5)   # reconnect delays for a test: first, most


class Device:
    """A device publishing at QoS 1 through the broker (paho, a real client)."""

    def __init__(self, port, client_id="hp-mq"):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    async def publish(self, topic, payload, retain=False):
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        await asyncio.to_thread(info.wait_for_publish, 5)
        assert info.is_published()   # the broker acknowledged the device

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


async def registered_device(parts, port):
    device = Device(port)
    await device.publish("spot/v1/hp-mq/announce", announce("hp-mq"), retain=True)
    assert await until(lambda: "hp-mq" in parts.bridge.known)
    return device


def test_telemetry_the_store_refused_is_stored_when_it_is_back_without_anyone_dropping_the_link(
        tmp_path, broker):
    """The broker sends an unacknowledged message again only on a new connection, and
    each holds one of its in-flight slots meanwhile: the session ends the connection
    itself, or a store failure would leave the message (and, once the slots are all
    held, every later one) undelivered for as long as the link stayed up."""
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            session = parts.mqtt.session
            session.reconnect_delay = QUICK
            device = await registered_device(parts, broker.port)
            try:
                t = int(time.time()) - 60
                add = parts.store.add_telemetry_frames
                failures = []

                async def failing_once(frames):
                    failures.append(frames)
                    parts.store.add_telemetry_frames = add   # back for the next batch
                    raise StoreError("disk full (test)")
                parts.store.add_telemetry_frames = failing_once
                connections = session.connections
                await device.publish("spot/v1/hp-mq/10/up", notify(t=t, values={11: 7}))

                async def stored():
                    return await parts.store.history("hp-mq", HP, 11) == [(t, 7)]
                assert await until(stored)   # the broker sent it again on a new connection
                assert len(failures) == 1 and session.connections == connections + 1
                assert parts.bridge.metrics.value("telemetry_not_stored", transport="mqtt") == 1
            finally:
                device.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_birth_whose_registration_the_store_refused_is_registered_when_the_broker_sends_it_again(
        tmp_path, broker):
    """A birth is acknowledged only once its registration is stored (or refused for
    good): one the store could not take comes back from the broker on a new connection,
    with nothing published again by the device."""
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            session = parts.mqtt.session
            session.reconnect_delay = QUICK
            register = parts.store.register_devices_waiting
            failures = []

            async def failing_once(announces, then):
                failures.append(announces)
                parts.store.register_devices_waiting = register   # back for the next batch
                raise StoreError("disk full (test)")
            parts.store.register_devices_waiting = failing_once
            connections = session.connections
            device = Device(broker.port)
            try:
                await device.publish("spot/v1/hp-mq/announce", announce("hp-mq"))
                assert await until(lambda: "hp-mq" in parts.bridge.known)
                assert len(failures) == 1 and session.connections == connections + 1
                assert parts.bridge.metrics.value("registrations_not_stored",
                                                  transport="mqtt") == 1
            finally:
                device.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_message_over_the_limit_is_refused_visibly_and_acknowledged_so_it_never_comes_back(
        tmp_path, broker, caplog):
    """mosquitto takes messages of up to 256 MB; the bridge reads at most [mqtt] max_packet
    (64 KiB) of one. A longer one is not held in memory: it is refused in the log and in
    /metrics, and acknowledged, since MQTT 3.1.1 has no refusal and the broker would send it
    again after every reconnect. The frames after it are stored."""
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            session = parts.mqtt.session
            session.reconnect_delay = QUICK
            device = await registered_device(parts, broker.port)
            refused = parts.bridge.metrics
            try:
                t = int(time.time()) - 60

                async def stored(values):
                    async def check():
                        return await parts.store.history("hp-mq", HP, 11) == values
                    assert await until(check)
                big = notify(t=t - 1, values={11: 1}) + bytes(70000)
                await device.publish("spot/v1/hp-mq/10/up", big)
                await device.publish("spot/v1/hp-mq/10/up", notify(t=t, values={11: 7}))
                await stored([(t, 7)])
                assert refused.value("frames_rejected", reason="mqtt_oversized") == 1
                lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
                assert ["mqtt_oversized (hp-mq): a message of %d bytes on spot/v1/hp-mq/10/up, "
                        "over the limit of 65536 ([mqtt] max_packet): dropped"
                        % len(M.encode_publish("spot/v1/hp-mq/10/up", big, 1, pid=1))] == [m for m in lines if "mqtt_oversized" in m]
                connections = session.connections
                session.transport.close()   # the broker sends again what was not acknowledged
                assert await until(lambda: session.connections == connections + 1
                                   and session.ready.is_set())
                await device.publish("spot/v1/hp-mq/10/up", notify(t=t + 1, values={11: 8}))
                await stored([(t, 7), (t + 1, 8)])
                assert refused.value("frames_rejected", reason="mqtt_oversized") == 1
                assert "mqtt_oversized" in parts.bridge.metrics.render()
            finally:
                device.stop()
    with caplog.at_level(logging.ERROR, logger="spot.bridge.peers"):
        asyncio.run(asyncio.wait_for(main(), 30))


def test_the_link_connects_again_after_the_broker_restarts_and_stores_what_follows(
        tmp_path, broker):
    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            session = parts.mqtt.session
            session.reconnect_delay = QUICK
            assert session.ready.is_set()
            broker.stop()
            assert await until(lambda: not session.ready.is_set())
            await asyncio.to_thread(broker.start)   # same port, its persisted sessions
            assert await until(session.ready.is_set)
            device = await registered_device(parts, broker.port)
            try:
                t = int(time.time()) - 30
                await device.publish("spot/v1/hp-mq/10/up", notify(t=t, values={11: 9}))

                async def stored():
                    return await parts.store.history("hp-mq", HP, 11) == [(t, 9)]
                assert await until(stored)
            finally:
                device.stop()
    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_command_that_timed_out_while_the_broker_was_away_is_not_sent_after_the_reconnect(
        tmp_path, broker):
    """A request published while the link is down waits in the session's outbox; once
    it has timed out it is taken back, so the device never gets a command whose status
    already says timeout. A later command shows the link and the device's queue work."""
    got = []
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hp-mq-down",
                         protocol=mqtt.MQTTv311, clean_session=False)
    device.on_message = lambda c, u, m: got.append(m.payload)
    device.reconnect_delay_set(0.05, 0.2)
    device.connect("127.0.0.1", broker.port)
    device.subscribe("spot/v1/hp-mq/#", qos=1)   # a persistent session: kept by the broker
    device.loop_start()

    async def main():
        async with bridge(tmp_path, mqtt_url="mqtt://127.0.0.1:%d" % broker.port) as parts:
            link, session = parts.mqtt, parts.mqtt.session
            session.reconnect_delay = QUICK
            broker.stop()
            assert await until(lambda: not session.ready.is_set())
            late = F.encode(F.READ, HP, 7, [0, [11]])
            try:
                await link.request("hp-mq", late, 0.2)
                raise AssertionError("answered with no broker")
            except TimeoutError:
                pass
            await asyncio.to_thread(broker.start)
            assert await until(session.ready.is_set)
            marker = F.encode(F.READ, HP, 8, [0, [12]])
            with contextlib.suppress(TimeoutError):
                await link.request("hp-mq", marker, 0.2)   # no device answers: only sent
            assert await until(lambda: marker in got)
            assert late not in got
    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        device.loop_stop()
        device.disconnect()


def test_a_subscription_the_broker_refused_is_asked_for_again_until_it_is_granted(tmp_path):
    """mosquitto's dynamic-security plugin refuses every subscription (SUBACK 0x80) until
    its admin allows them, while the broker runs: the session asks again with the
    reconnect delays, on the same connection, and is ready once they are granted."""
    d = tmp_path / "dynsec"
    d.mkdir()
    guarded = Broker(str(d), dynsec=True)
    guarded.start()

    async def main():
        received = []
        session = MqttSession("127.0.0.1", guarded.port, "spot-test",
                              [("spot/v1/+/+/up", 1), ("spot/v1/+/announce", 1)],
                              lambda topic, payload, pid, gen: received.append((topic, payload)),
                              reconnect_delay=QUICK).start()
        try:
            assert await until(session.failed.is_set)
            assert session.last_error == ("subscription refused: "
                                          "['spot/v1/+/+/up', 'spot/v1/+/announce']")
            await asyncio.to_thread(guarded.wait_log, "Received SUBSCRIBE from spot-test",
                                    count=3)   # asked again, and refused again
            assert not session.ready.is_set()
            await asyncio.to_thread(guarded.dynsec, {
                "command": "setDefaultACLAccess",
                "acls": [{"acltype": "subscribe", "allow": True},
                         {"acltype": "publishClientSend", "allow": True}]})
            assert await until(session.ready.is_set)
            assert not session.failed.is_set() and session.connections == 1
            await asyncio.to_thread(mosquitto_pub, guarded, "-q", "1", "-t",
                                    "spot/v1/hp-1/10/up", "-m", "x")
            assert await until(lambda: received == [("spot/v1/hp-1/10/up", b"x")])
        finally:
            await session.stop()
    try:
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        guarded.stop()


def test_over_mqtts_with_the_ca_a_birth_registers_the_device(tmp_path):
    certs = make_ca_and_server_cert(str(tmp_path))
    d = tmp_path / "tls-broker"
    d.mkdir()
    tls_broker = Broker(str(d), tls=certs)
    tls_broker.start()
    try:
        mosquitto_pub(tls_broker, "--cafile", certs["ca"], "-q", "1", "-r",
                      "-t", "spot/v1/hp-tls/announce", "-s",
                      stdin=_file(tmp_path / "birth", announce("hp-tls")))

        async def main():
            async with bridge(tmp_path, mqtt_url="mqtts://127.0.0.1:%d" % tls_broker.port,
                              mqtt_ca=certs["ca"]) as parts:
                assert parts.mqtt.session.ready.is_set()
                assert await until(lambda: "hp-tls" in parts.bridge.known)
        asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        tls_broker.stop()


def test_over_mqtts_a_broker_whose_certificate_the_ca_did_not_sign_is_not_trusted(tmp_path):
    certs = make_ca_and_server_cert(str(tmp_path))
    other = tmp_path / "other-ca"
    other.mkdir()
    wrong_ca = make_ca_and_server_cert(str(other))["ca"]
    d = tmp_path / "tls-broker"
    d.mkdir()
    tls_broker = Broker(str(d), tls=certs)
    tls_broker.start()
    try:
        async def main():
            async with bridge(tmp_path, mqtt_url="mqtts://127.0.0.1:%d" % tls_broker.port,
                              mqtt_ca=wrong_ca) as parts:
                session = parts.mqtt.session
                assert not session.ready.is_set() and session.connections == 0
                assert "CERTIFICATE_VERIFY_FAILED" in session.last_error
        asyncio.run(asyncio.wait_for(main(), 40))
    finally:
        tls_broker.stop()


def _file(path, data):
    path.write_bytes(data)
    return open(path, "rb")


class FakeBroker:
    """A scripted MQTT broker (test double, not a peer): answers CONNECT with CONNACK
    and SUBSCRIBE with SUBACK, records every packet a connection sends, and lets the
    test write raw bytes to the latest connection."""

    def __init__(self):
        self.conns = []         # one list of received packets per connection
        self.closed = []        # connection index -> True once the client closed it
        self.writers = []
        self.server = None
        self.port = None

    @staticmethod
    def suback(pid, n):
        """The SUBACK to a SUBSCRIBE of n filters: each granted QoS 1."""
        return M.encode_suback(pid, [1] * n)

    async def start(self):
        self.port = free_tcp_port()
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def _serve(self, reader, writer):
        n = len(self.conns)
        got = []
        self.conns.append(got)
        self.closed.append(False)
        self.writers.append(writer)
        parser = M.StreamParser()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                for p in parser.feed(data):
                    got.append(p)
                    if p.type == M.CONNECT:
                        writer.write(M.encode_connack(n > 0, 0))
                    elif p.type == M.SUBSCRIBE:
                        writer.write(self.answer_subscribe(p))
        except ConnectionError:
            pass
        self.closed[n] = True
        writer.close()

    def answer_subscribe(self, p):
        return self.suback(p.pid, len(p.filters))

    def send(self, data):
        self.writers[-1].write(data)

    async def close(self):
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()


def session_on(fake, received, **options):
    s = MqttSession("127.0.0.1", fake.port, "spot-test", [("spot/v1/+/+/up", 1)],
                    lambda topic, payload, pid, gen: received.append((topic, pid, gen)),
                    reconnect_delay=QUICK, **options)
    return s.start()


def test_a_malformed_packet_from_the_broker_closes_the_connection_with_the_reason():
    async def main():
        fake = await FakeBroker().start()
        received = []
        session = session_on(fake, received)
        try:
            assert await until(session.ready.is_set)
            fake.send(b"\x36\x02\x00\x00")   # PUBLISH with QoS 3
            assert await until(lambda: fake.closed[0])
            assert session.last_error == "malformed packet: PUBLISH with QoS 3"
            assert received == []
            assert await until(lambda: len(fake.conns) == 2)   # and it connects again
            assert fake.conns[1][0].type == M.CONNECT
        finally:
            await session.stop()
            await fake.close()
    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_packet_other_than_publish_longer_than_the_maximum_is_refused_before_it_is_read():
    async def main():
        fake = await FakeBroker().start()
        session = session_on(fake, [], max_packet=4096)
        try:
            assert await until(session.ready.is_set)
            fake.send(b"\x90\xff\xff\xff\x7f")   # a SUBACK announcing 256 MiB
            assert await until(lambda: fake.closed[0])
            assert session.last_error == ("malformed packet: packet of 268435460 bytes "
                                          "exceeds the maximum of 4096")
        finally:
            await session.stop()
            await fake.close()
    asyncio.run(asyncio.wait_for(main(), 20))


def test_an_acknowledgement_for_a_message_of_an_earlier_connection_is_not_sent():
    async def main():
        fake = await FakeBroker().start()
        received = []
        session = session_on(fake, received)
        publish = M.encode_publish("spot/v1/hp-1/10/up", b"x", qos=1, pid=7)
        try:
            assert await until(session.ready.is_set)
            fake.send(publish)
            assert await until(lambda: len(received) == 1)
            fake.writers[0].close()   # the broker drops the link before the PUBACK
            assert await until(lambda: len(fake.conns) == 2 and session.ready.is_set())
            fake.send(M.encode_publish("spot/v1/hp-1/10/up", b"x", qos=1, dup=True, pid=7))
            assert await until(lambda: len(received) == 2)
            (_, _, old), (_, _, new) = received
            assert session.ack(7, old) is False    # pid 7 may name another message now
            assert session.ack(7, new) is True

            def pubacks():
                return [p.pid for p in fake.conns[1] if p.type == M.PUBACK]
            assert await until(lambda: pubacks() == [7])
            assert not [p for p in fake.conns[0] if p.type == M.PUBACK]
        finally:
            await session.stop()
            await fake.close()
    asyncio.run(asyncio.wait_for(main(), 20))


class MiscountingBroker(FakeBroker):
    """FakeBroker (test double) whose SUBACK has one return code fewer than the
    SUBSCRIBE had filters (MQTT 3.1.1 wants one a filter)."""

    @staticmethod
    def suback(pid, n):
        return M.encode_suback(pid, [1] * (n - 1))


def test_a_suback_without_a_code_for_every_filter_is_a_protocol_error_not_a_subscription():
    async def main():
        fake = await MiscountingBroker().start()
        session = MqttSession("127.0.0.1", fake.port, "spot-test",
                              [("spot/v1/+/+/up", 1), ("spot/v1/+/announce", 1)],
                              lambda *a: None, reconnect_delay=QUICK).start()
        try:
            assert await until(lambda: fake.closed and fake.closed[0])
            assert session.last_error == ("protocol error: SUBACK with 1 return codes "
                                          "for 2 filters")
            assert not session.ready.is_set()
        finally:
            await session.stop()
            await fake.close()
    asyncio.run(asyncio.wait_for(main(), 20))


class RefusingBroker(FakeBroker):
    """FakeBroker (test double) that refuses one filter (SUBACK 0x80) the first
    `refusals` times it is asked for, and notes when each SUBSCRIBE came and what it had."""

    def __init__(self, refused, refusals):
        super().__init__()
        self.refused = refused
        self.refusals = refusals
        self.subscribes = []   # (loop time, [filters])

    def answer_subscribe(self, p):
        filters = [f for f, _ in p.filters]
        self.subscribes.append((asyncio.get_running_loop().time(), filters))
        codes = []
        for f in filters:
            if f == self.refused and self.refusals:
                self.refusals -= 1
                codes.append(M.SUBACK_FAILURE)
            else:
                codes.append(1)
        return M.encode_suback(p.pid, codes)


def test_only_the_refused_filter_is_asked_for_again_with_growing_delays_until_granted():
    async def main():
        fake = await RefusingBroker("spot/v1/+/announce", refusals=5).start()
        session = MqttSession("127.0.0.1", fake.port, "spot-test",
                              [("spot/v1/+/+/up", 1), ("spot/v1/+/announce", 1)],
                              lambda *a: None, reconnect_delay=QUICK).start()
        try:
            assert await until(session.ready.is_set)
            assert not session.failed.is_set()
            await asyncio.sleep(1.0)   # longer than the longest delay: nothing more is asked
            asked = [filters for _, filters in fake.subscribes]
            assert asked == [["spot/v1/+/+/up", "spot/v1/+/announce"]] + [
                ["spot/v1/+/announce"]] * 5
            times = [t for t, _ in fake.subscribes]
            gaps = [b - a for a, b in zip(times, times[1:])]
            for gap, delay in zip(gaps, (0.05, 0.1, 0.2, 0.4, 0.5)):   # QUICK: 0.05 .. 0.5
                assert gap >= delay * 0.9, (gaps, delay)
            assert len(fake.conns) == 1   # all on one connection
        finally:
            await session.stop()
            await fake.close()
    asyncio.run(asyncio.wait_for(main(), 20))

