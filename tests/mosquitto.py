"""A real mosquitto and its command-line clients for the MQTT tests.

Every broker gets its own config, log and persistence directory in a tmp dir
and a free 127.0.0.1 port; every process started here has a stop(); every
wait has a timeout. Used by test_mqtt_interop.py and test_mqtt_binding_interop.py.
"""
import datetime
import getpass
import glob
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import threading
import time

from netutil import free_tcp_port as free_port  # noqa: F401  (tests import it from here)

WAIT = 10.0  # seconds, upper bound of any single wait
TOOLS = ('mosquitto', 'mosquitto_sub', 'mosquitto_pub')
DYNSEC_ADMIN = ('admin', 'dynsec-admin-test')   # the dynamic-security plugin's admin


def missing_tools():
    """Names of the mosquitto programs not installed (Debian packages
    mosquitto, mosquitto-clients)."""
    return [t for t in TOOLS if not shutil.which(t)]


def wait_for(cond, timeout=WAIT, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError('timed out after %.1f s waiting for %s' % (timeout, what))


class Broker:
    """One mosquitto with its own config, log and persistence in a tmp dir."""

    def __init__(self, tmp, tls=None, users=None, acl=None, dynsec=False):
        """users: {name: password} turns anonymous access off; acl: the ACL file's text;
        dynsec: run mosquitto's dynamic-security plugin (access changed while it runs,
        dynsec()), which starts denying every client (anonymous ones too) subscribing
        and publishing."""
        self.dir = tmp
        self.port = free_port()
        self.log = os.path.join(tmp, 'mosquitto.log')
        self.conf = os.path.join(tmp, 'mosquitto.conf')
        lines = [
            'listener %d 127.0.0.1' % self.port,
            'allow_anonymous %s' % ('false' if users else 'true'),
            'persistence true',
            'persistence_location %s%s' % (tmp, os.sep),
            'autosave_interval 3600',
            'log_dest file %s' % self.log,
            'log_type all',
            # as root mosquitto would switch to user "mosquitto", which
            # cannot write this tmp dir; naming ourselves keeps us
            'user %s' % getpass.getuser(),
        ]
        if tls:
            lines += ['cafile %s' % tls['ca'], 'certfile %s' % tls['cert'],
                      'keyfile %s' % tls['key']]
        if users:
            passwords = os.path.join(tmp, 'passwords')
            open(passwords, 'w').close()
            for name, password in users.items():
                subprocess.run(['mosquitto_passwd', '-b', passwords, name, password], check=True,
                               capture_output=True, timeout=WAIT)
            lines.append('password_file %s' % passwords)
        if dynsec:
            plugins = glob.glob('/usr/lib/*/mosquitto_dynamic_security.so') + glob.glob(
                '/usr/lib/mosquitto_dynamic_security.so')
            assert plugins, 'mosquitto_dynamic_security.so not found (Debian package mosquitto)'
            config = os.path.join(tmp, 'dynamic-security.json')
            subprocess.run(['mosquitto_ctrl', 'dynsec', 'init', config] + list(DYNSEC_ADMIN),
                           check=True, capture_output=True, timeout=WAIT)
            lines += ['plugin %s' % plugins[0], 'plugin_opt_config_file %s' % config]
        if acl is not None:
            acl_file = os.path.join(tmp, 'acl')
            with open(acl_file, 'w') as f:
                f.write(acl)
            lines.append('acl_file %s' % acl_file)
        with open(self.conf, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(['mosquitto', '-c', self.conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def listening():
            assert self.proc.poll() is None, 'mosquitto exited: %s' % self.log_text()
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for(listening, what='mosquitto to listen')

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its database
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        self.proc = None

    def dynsec(self, *commands):
        """Send dynamic-security commands (dicts, e.g. {"command": "setDefaultACLAccess",
        ...}) as its admin with mosquitto_rr; fails on an error response."""
        r = subprocess.run(['mosquitto_rr', '-h', '127.0.0.1', '-p', str(self.port),
                            '-u', DYNSEC_ADMIN[0], '-P', DYNSEC_ADMIN[1],
                            '-t', '$CONTROL/dynamic-security/v1',
                            '-e', '$CONTROL/dynamic-security/v1/response',
                            '-m', json.dumps({'commands': list(commands)}), '-W', '%d' % WAIT],
                           check=True, capture_output=True, text=True, timeout=WAIT + 5)
        responses = json.loads(r.stdout)['responses']
        assert not [x for x in responses if 'error' in x], responses
        return responses

    def log_text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_log(self, text, count=1):
        wait_for(lambda: self.log_text().count(text) >= count,
                 what='%r in mosquitto log' % text)


class Sub:
    """mosquitto_sub in the background, its output lines collected."""

    def __init__(self, args):
        self.proc = subprocess.Popen(['mosquitto_sub'] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode('utf-8', 'replace').rstrip('\n'))

    def wait_exit(self):
        self.proc.wait(WAIT)
        self._reader.join(WAIT)
        return self.lines

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        self._reader.join(WAIT)


class MqttRig:
    """What one MQTT interop test starts (brokers, mosquitto_subs, device loops and
    whatever else a suite adds with keep()); close() stops them all, devices first."""

    def __init__(self, tmp_path):
        missing = missing_tools()
        if missing:  # a failure, not a skip: these tests are the proof of interop
            raise AssertionError('not installed: %s (Debian packages mosquitto, '
                                 'mosquitto-clients)' % ', '.join(missing))
        self.tmp_path = tmp_path
        self.brokers, self.subs, self.devices, self.others = [], [], [], []

    def broker(self, tls=None):
        d = self.tmp_path / ('broker%d' % len(self.brokers))
        d.mkdir()
        b = Broker(str(d), tls)
        self.brokers.append(b)
        b.start()
        return b

    def sub(self, broker, args, client_id):
        s = Sub(['-h', '127.0.0.1', '-p', str(broker.port), '-i', client_id] + args)
        self.subs.append(s)
        broker.wait_log('Sending SUBACK to %s' % client_id)
        return s

    def keep_device(self, dev):
        """dev has .loop (stop(disconnect)) and .thread, the thread running it."""
        self.devices.append(dev)
        return dev

    def keep(self, thing):
        """Anything else with a stop(); stopped after the devices, before the brokers."""
        self.others.append(thing)
        return thing

    def close(self):
        for dev in self.devices:
            dev.loop.stop(False)
        for dev in self.devices:
            dev.thread.join(WAIT)
        for thing in self.others + self.subs + self.brokers:
            thing.stop()
        assert not any(d.thread.is_alive() for d in self.devices), 'device loop did not stop'


def mosquitto_pub(broker, *args, stdin=None):
    """Run mosquitto_pub against broker to completion (stdin: a file object)."""
    subprocess.run(['mosquitto_pub', '-h', '127.0.0.1', '-p', str(broker.port)] + list(args),
                   check=True, timeout=WAIT, stdin=stdin)


def make_ca_and_server_cert(d):
    """A throw-away CA and a server certificate for localhost / 127.0.0.1 in
    directory d; returns {'ca', 'cert', 'key'} file paths."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = datetime.datetime.now(datetime.timezone.utc)
    hour = datetime.timedelta(hours=1)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(fname, data):
        path = os.path.join(d, fname)
        with open(path, 'wb') as f:
            f.write(data)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder()
          .subject_name(name('SPOT test CA')).issuer_name(name('SPOT test CA'))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - hour).not_valid_after(now + 24 * hour)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                         critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(name('localhost')).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - hour).not_valid_after(now + 24 * hour)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]),
                critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {
        'ca': write('ca.pem', ca.public_bytes(pem)),
        'cert': write('server.pem', cert.public_bytes(pem)),
        'key': write('server.key', key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())),
    }
