"""Our MQTT client (core.mqtt_client in ports/micropython/mqtt_loop, in a
thread) against a real mosquitto and its command-line clients, plus a fake
broker that sends garbage. Every broker and client process is started here
on a free 127.0.0.1 port and stopped in teardown; every wait has a timeout.
"""
import signal
import socket
import threading
import time

import pytest

from spot.core.mqtt_client import (MqttClient, MemoryOutbox, EV_CONNECTED,
                                   EV_MESSAGE, EV_PUBACK, EV_SUBACK,
                                   EV_DISCONNECTED)
from spot.ports.micropython.mqtt_loop import MqttLoop, make_tls_context

from mosquitto import (WAIT, MqttRig, wait_for,
                       make_ca_and_server_cert, mosquitto_pub)


class Device:
    """Our client in MqttLoop on a thread, with its events recorded."""

    def __init__(self, port, client, **loop_kw):
        self.events = []
        loop_kw.setdefault('backoff_min_ms', 100)
        loop_kw.setdefault('backoff_max_ms', 400)
        self.loop = MqttLoop(client, '127.0.0.1', port, on_event=self.events.append,
                             **loop_kw)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()

    def of_kind(self, kind):
        return [e for e in list(self.events) if e.kind == kind]

    def wait_event(self, kind, count=1, timeout=WAIT):
        wait_for(lambda: len(self.of_kind(kind)) >= count, timeout,
                 '%d %r event(s); got %r' % (count, kind, self.events))
        return self.of_kind(kind)

    def stop(self, disconnect=True):
        self.loop.stop(disconnect)
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), 'loop thread did not stop'


class Env(MqttRig):
    def device(self, port, client, **kw):
        return self.keep_device(Device(port, client, **kw))


@pytest.fixture
def env(tmp_path):
    """Starts brokers, subscribers and devices; stops all of them after."""
    rig = Env(tmp_path)
    yield rig
    rig.close()


# ---------------------------------------------------------------- (a)

def test_qos0_and_qos1_publishes_reach_mosquitto_sub(env):
    broker = env.broker()
    sub = env.sub(broker, ['-q', '1', '-C', '2', '-F', '%q %t %p', '-t', 'spot/a/#'], 'sub-a')
    dev = env.device(broker.port, MqttClient('spot-a', keepalive=10))
    dev.wait_event(EV_CONNECTED)
    assert dev.loop.publish('spot/a/tele', b'zero', 0) == 0
    pid = dev.loop.publish('spot/a/alarm', b'one', 1)
    assert dev.wait_event(EV_PUBACK)[0].pid == pid
    assert sorted(sub.wait_exit()) == ['0 spot/a/tele zero', '1 spot/a/alarm one']
    assert len(dev.loop.client.outbox) == 0


# ---------------------------------------------------------------- (b)

def test_mosquitto_pub_reaches_our_subscription(env, tmp_path):
    broker = env.broker()
    dev = env.device(broker.port, MqttClient('spot-b'))
    dev.wait_event(EV_CONNECTED)
    dev.loop.subscribe([('spot/b/+/cmd', 1)])
    assert dev.wait_event(EV_SUBACK)[0].granted == [1]
    payload = bytes(range(256))  # binary, every byte value
    path = tmp_path / 'payload.bin'
    path.write_bytes(payload)
    mosquitto_pub(broker, '-q', '1', '-t', 'spot/b/hp1/cmd', '-f', str(path))
    msg = dev.wait_event(EV_MESSAGE)[0]
    assert (msg.topic, msg.payload, msg.qos, msg.retain) == ('spot/b/hp1/cmd', payload, 1, False)
    # the broker got our PUBACK for its QoS 1 delivery
    broker.wait_log('Received PUBACK from spot-b')


# ---------------------------------------------------------------- (c)

def test_retained_message_delivered_on_subscribe_with_retain_flag(env):
    broker = env.broker()
    mosquitto_pub(broker, '-q', '1', '-r', '-t', 'spot/c/plan', '-m', 'plan-7')
    dev = env.device(broker.port, MqttClient('spot-c'))
    dev.wait_event(EV_CONNECTED)
    dev.loop.subscribe([('spot/c/#', 1)])
    msg = dev.wait_event(EV_MESSAGE)[0]
    assert (msg.topic, msg.payload, msg.retain) == ('spot/c/plan', b'plan-7', True)
    # a live publish to an existing subscriber is not flagged retained
    mosquitto_pub(broker, '-q', '1', '-t', 'spot/c/plan', '-m', 'plan-8')
    live = dev.wait_event(EV_MESSAGE, 2)[1]
    assert (live.payload, live.retain) == (b'plan-8', False)


# ---------------------------------------------------------------- (d)

def test_will_published_when_socket_killed_not_on_clean_disconnect(env):
    broker = env.broker()
    sub = env.sub(broker, ['-q', '1', '-C', '1', '-v', '-t', 'spot/d/+/status'], 'sub-d')
    # A disconnects cleanly: the broker must drop A's will
    a = env.device(broker.port, MqttClient(
        'spot-d-A', will=('spot/d/A/status', b'dead-A', 1, False)))
    a.wait_event(EV_CONNECTED)
    a.stop()
    broker.wait_log('Client spot-d-A disconnected.')
    # B's socket dies without DISCONNECT: the broker publishes B's will
    b = env.device(broker.port, MqttClient(
        'spot-d-B', will=('spot/d/B/status', b'dead-B', 1, False)))
    b.wait_event(EV_CONNECTED)
    b.loop.drop_connection()
    assert sub.wait_exit() == ['spot/d/B/status dead-B']
    # and B reconnects by itself after the link loss
    b.wait_event(EV_CONNECTED, 2)


# ---------------------------------------------------------------- (e)

def test_broker_restart_mid_stream_loses_no_qos1_message(env):
    broker = env.broker()
    # persistent subscriber session: clean=false (-c), fixed id, QoS 1
    sub = env.sub(broker, ['-c', '-q', '1', '-v', '-t', 'spot/e/stream'], 'sub-e')
    client = MqttClient('spot-e-pub', keepalive=5, clean_session=False, retry_ms=3000,
                        outbox=MemoryOutbox(max_messages=256, max_bytes=65536))
    dev = env.device(broker.port, client)
    dev.wait_event(EV_CONNECTED)
    sent = []
    for i in range(200):
        if i == 60:
            broker.stop()
            wait_for(lambda: not dev.loop.connected, what='publisher to see the broker gone')
        if i == 140:
            queued_while_down = len(client.outbox)
            broker.start()
        payload = b'm%03d' % i
        dev.loop.publish('spot/e/stream', payload, 1)   # raises OutboxFull if lost
        sent.append(payload.decode())
        time.sleep(0.005)
    # all acknowledged by the broker, all seen by the subscriber
    wait_for(lambda: len(client.outbox) == 0, 20, 'outbox to drain')

    def received():
        return {line.split(' ', 1)[1] for line in list(sub.lines) if ' ' in line}
    wait_for(lambda: received() >= set(sent), 20,
             'subscriber to receive all 200 (missing %d)' % len(set(sent) - received()))
    assert received() == set(sent)
    assert queued_while_down >= 80
    assert dev.loop.connections >= 2
    assert len(dev.of_kind(EV_PUBACK)) == 200


# ---------------------------------------------------------------- keep-alive

def test_keepalive_pings_answered_by_broker_keep_the_link(env):
    broker = env.broker()
    dev = env.device(broker.port, MqttClient('spot-k', keepalive=1, ping_timeout_ms=1000))
    dev.wait_event(EV_CONNECTED)
    wait_for(lambda: broker.log_text().count('Received PINGREQ from spot-k') >= 2,
             what='two PINGREQs')
    broker.wait_log('Sending PINGRESP to spot-k')
    assert dev.of_kind(EV_DISCONNECTED) == []
    assert dev.loop.connections == 1


def test_frozen_broker_detected_as_dead_link_then_reconnected(env):
    broker = env.broker()
    dev = env.device(broker.port, MqttClient('spot-z', keepalive=1, ping_timeout_ms=500,
                                             connect_timeout_ms=500))
    dev.wait_event(EV_CONNECTED)
    broker.proc.send_signal(signal.SIGSTOP)  # TCP stays up, nothing answers
    try:
        ev = dev.wait_event(EV_DISCONNECTED)[0]
        assert ev.error and 'no PINGRESP' in ev.reason
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    dev.wait_event(EV_CONNECTED, 2)
    assert dev.loop.connected


# ---------------------------------------------------------------- (f)

class FakeBroker:
    """A raw TCP server; replies[i] is what it sends on connection i after
    reading the CONNECT (None: send nothing), then it waits for the client
    to close the connection and counts that in closed_by_client."""

    def __init__(self, replies):
        self.replies = replies
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed_by_client = 0
        self.conns = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(conn)
            conn.settimeout(WAIT)
            try:
                conn.recv(1024)  # the CONNECT
                reply = self.replies[min(self.accepted, len(self.replies) - 1)]
                self.accepted += 1
                if reply is not None:
                    conn.sendall(reply)
                while conn.recv(1024):
                    pass
                self.closed_by_client += 1
            except OSError:
                pass

    def close(self):
        self._stop = True
        self.thread.join(WAIT)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_garbage_from_broker_closes_cleanly_with_error_and_reconnects(env):
    fake = FakeBroker([
        b'\x20\x02\x00\x00' + b'\xff\xfe\xfd\xfc garbage',  # CONNACK, then junk
        b'\x30\xff\xff\xff\xff\xff',                         # 5-byte length
        b'\x20\x02\x00\x00',                                  # a sane broker
    ])
    try:
        dev = env.device(fake.port, MqttClient('spot-f'))
        errors = lambda: [e for e in dev.of_kind(EV_DISCONNECTED) if e.error]
        wait_for(lambda: len(errors()) >= 2, what='two error events')
        assert all('malformed' in e.reason for e in errors()[:2])
        dev.wait_event(EV_CONNECTED, 2)
        assert fake.accepted >= 3
        assert fake.closed_by_client >= 2  # we closed both bad connections
        assert dev.thread.is_alive() and dev.loop.connected
        dev.stop()
    finally:
        fake.close()


def test_silent_broker_times_out_and_reconnects(env):
    fake = FakeBroker([None])
    try:
        dev = env.device(fake.port, MqttClient('spot-f2', connect_timeout_ms=300))
        ev = dev.wait_event(EV_DISCONNECTED, 2)
        assert all('no CONNACK' in e.reason for e in ev)
        assert fake.accepted >= 2
        assert fake.closed_by_client >= 1
        dev.stop()
    finally:
        fake.close()


# ---------------------------------------------------------------- (g)

def test_tls_connection_verified_against_our_ca(env, tmp_path):
    certs = make_ca_and_server_cert(str(tmp_path))
    broker = env.broker(tls=certs)
    dev = env.device(broker.port, MqttClient('spot-g'),
                     ssl_context=make_tls_context(cafile=certs['ca']),
                     server_hostname='localhost')
    dev.wait_event(EV_CONNECTED)
    dev.loop.subscribe([('spot/g/#', 1)])
    dev.wait_event(EV_SUBACK)
    pid = dev.loop.publish('spot/g/tele', b'over tls', 1)
    assert dev.wait_event(EV_PUBACK)[0].pid == pid
    msg = dev.wait_event(EV_MESSAGE)[0]
    assert (msg.topic, msg.payload) == ('spot/g/tele', b'over tls')


def test_tls_refuses_a_broker_our_ca_did_not_sign(env, tmp_path):
    certs = make_ca_and_server_cert(str(tmp_path))
    other = tmp_path / 'other'
    other.mkdir()
    other_ca = make_ca_and_server_cert(str(other))['ca']
    broker = env.broker(tls=certs)
    dev = env.device(broker.port, MqttClient('spot-g2'),
                     ssl_context=make_tls_context(cafile=other_ca),
                     server_hostname='localhost')
    wait_for(lambda: dev.loop.last_error is not None, what='a TLS failure')
    assert 'CERTIFICATE_VERIFY_FAILED' in dev.loop.last_error
    assert dev.loop.connections == 0 and not dev.of_kind(EV_CONNECTED)
