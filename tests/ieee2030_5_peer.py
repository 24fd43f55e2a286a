"""The real IEEE 2030.5 peer for the tests: gridappsd-2030-5 (BSD-3, alpha) on loopback.

It installs only on CPython 3.10 (with --prefer-binary), so it lives in its own
virtual environment in a cache directory (SPOT_TEST_CACHE, default
~/.cache/spot-tests), made once by `python3 tests/ieee2030_5_peer.py --install`
(tools/test.sh runs that) or by the first test that needs it. Python 3.10 is
taken from SPOT_PYTHON310, `python3.10` on PATH or pyenv, else fetched with
`uv python install 3.10` (uv pip-installed first if missing).

GridappsdServer writes the server's configuration (one aggregator EndDevice,
the default program), starts `2030_5_server` as a subprocess in its own process
group with TZ set (its Time resource needs a zone with DST rules) and stops it.
Its admin API (same port, admin certificate) creates DERControls.

PatchingProxy is a test double in front of it: a mutual-TLS HTTPS proxy that
forwards every request unchanged, except for the server's gaps listed in
docs/ieee2030_5.md (no Response function set: POSTs under /rsps are recorded
and acknowledged here; a DefaultDERControl PUT through the admin API is never
served back, so the test's DefaultDERControl is served here; a control's
EventStatus cannot be changed after creation, so a control the test cancels is
served with currentStatus 2 here), and can spoil
one answer on purpose (malformed XML) to test the client's refusal.
"""
import asyncio
import glob
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = "gridappsd-2030-5==0.0.2a37"
TZ = "America/Los_Angeles"
DEVICE = "spot-agg"       # the aggregator's EndDevice / certificate name on the server
RSPS = "/rsps/0/rsp"      # replyTo of the tests' controls (served by PatchingProxy)


def cache_dir():
    return Path(os.environ.get("SPOT_TEST_CACHE") or Path.home() / ".cache" / "spot-tests")


def venv_dir():
    return cache_dir() / ("gridappsd-2030-5-%s-py310" % PACKAGE.split("==")[1])


def server_exe():
    return venv_dir() / "bin" / "2030_5_server"


def find_python310():
    """A CPython 3.10 interpreter, or None."""
    cands = [os.environ.get("SPOT_PYTHON310"), shutil.which("python3.10")]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3")))
    for c in cands:   # a pyenv shim may exist without that version being active: try it
        if c and os.path.exists(c) and subprocess.run(
                [c, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 10))"],
                capture_output=True).returncode == 0:
            return c
    return _python310_by_uv()


def _python310_by_uv():
    """CPython 3.10 fetched by uv (pip-installed first if missing), or None."""
    uv = [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]
    if uv[0] == sys.executable and subprocess.run(uv + ["--version"],
                                                  capture_output=True).returncode != 0:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "uv"], capture_output=True)
    subprocess.run(uv + ["python", "install", "3.10"], capture_output=True)
    found = subprocess.run(uv + ["python", "find", "3.10"], capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.strip():
        return found.stdout.strip()
    return None


def ensure_installed():
    """Path of 2030_5_server, installing it in its cached venv first if needed.
    RuntimeError saying why when it cannot be installed."""
    exe, done = server_exe(), venv_dir() / ".installed"
    if exe.exists() and done.exists():
        return exe
    py = find_python310()
    if py is None:
        raise RuntimeError("gridappsd-2030-5 needs CPython 3.10 and none was found or could "
                           "be fetched with uv: set SPOT_PYTHON310 or put python3.10 on PATH")
    venv = venv_dir()
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        "--prefer-binary", PACKAGE], capture_output=True, text=True)
    if r.returncode != 0 or not exe.exists():
        raise RuntimeError("pip could not install %s on %s:\n%s" % (PACKAGE, py, r.stderr[-3000:]))
    done.write_text(PACKAGE + "\n")
    return exe


OPENSSL_CNF = """\
# the test CA for gridappsd-2030-5 (its certs.py runs `openssl ca` with this)
[ ca ]
default_ca = test_ca
[ test_ca ]
dir = REPLACE_WITH_REPO_PATH
database = $dir/index.txt
new_certs_dir = $dir/certs
serial = $dir/serial
default_md = sha256
default_days = 30
policy = policy_any
x509_extensions = leaf
unique_subject = no
[ policy_any ]
countryName = optional
commonName = supplied
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = placeholder
[ v3_ca ]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ leaf ]
basicConstraints = CA:false
keyUsage = critical, digitalSignature, keyAgreement
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""

CONFIG = """\
server: 127.0.0.1
port: {port}
tls_repository: {dir}/tls
openssl_cnf: {dir}/openssl.cnf
server_mode: enddevices_create_on_start
lfdi_mode: lfdi_mode_from_cert_fingerprint
generate_admin_cert: true
cleanse_storage: true
storage_path: {dir}/data_store
include_default_der_on_all_devices: true
include_default_der_program_on_ders: true
devices:
  - id: {device}
    poll_rate: 1
    post_rate: 5
    pin: 111115
default_program:
  description: Default Program
  primacy: 0
  DefaultDERControl:
    DERControlBase:
      opModConnect: true
      opModEnergize: true
"""


class GridappsdServer:
    """gridappsd-2030-5 as a subprocess on a free loopback port (see the module docstring)."""

    def __init__(self, path, port):
        self.dir = Path(path)
        self.port = port
        self.url = "https://127.0.0.1:%d" % port
        self.proc = None
        tls = self.dir / "tls"
        self.ca = str(tls / "certs" / "ca.crt")
        self.cert = str(tls / "certs" / (DEVICE + ".crt"))
        self.key = str(tls / "private" / (DEVICE + ".pem"))
        self.admin_cert = str(tls / "certs" / "admin.crt")
        self.admin_key = str(tls / "private" / "admin.pem")
        self.server_cert = str(tls / "certs" / "127.0.0.1.crt")
        self.server_key = str(tls / "private" / "127.0.0.1.pem")
        self.log = self.dir / "server.log"

    def start(self):
        exe = ensure_installed()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "openssl.cnf").write_text(OPENSSL_CNF)
        (self.dir / "config.yml").write_text(CONFIG.format(port=self.port, dir=self.dir,
                                                           device=DEVICE))
        env = dict(os.environ, TZ=TZ)
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen([str(exe), "config.yml", "--create-certs"], cwd=self.dir,
                                     env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("2030_5_server exited %s:\n%s"
                                   % (self.proc.returncode, self.log.read_text()[-3000:]))
            if self._answers():
                # certificate names differ with the port (CN 127.0.0.1, file 127.0.0.1:PORT)
                named = Path(self.dir / "tls" / "certs" / ("127.0.0.1:%d.crt" % self.port))
                if named.exists():
                    self.server_cert = str(named)
                    self.server_key = str(self.dir / "tls" / "private" /
                                          ("127.0.0.1:%d.pem" % self.port))
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("2030_5_server did not answer on %s within 90 s:\n%s"
                           % (self.url, self.log.read_text()[-3000:]))

    def _answers(self):
        import http.client
        try:
            ctx = ssl.create_default_context(cafile=self.ca)
            ctx.load_cert_chain(self.cert, self.key)
            c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=2)
            c.request("GET", "/dcap")
            ok = c.getresponse().status == 200
            c.close()
            return ok
        except (OSError, ssl.SSLError, http.client.HTTPException):
            return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if getattr(self, "_out", None) is not None:
            self._out.close()
            self._out = None

    # ------------------------------------------------------------ admin API

    def _admin(self, method, path, body):
        import http.client
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.admin_cert, self.admin_key)
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        c.request(method, path, body=body, headers={"content-type": "application/sep+xml"})
        r = c.getresponse()
        out = (r.status, r.getheader("Location"), r.read())
        c.close()
        return out

    async def add_control(self, program=0, **fields):
        """POST a DERControl through the admin API; its href on the server."""
        body = der_control_xml(**fields)
        status, location, content = await asyncio.to_thread(
            self._admin, "POST", "/admin/derp/%d/derc" % program, body)
        if status not in (201, 204):
            raise RuntimeError("admin API refused the control: HTTP %d %r" % (status, content))
        return location

    def admin_put_default(self, program, body):
        return self._admin("PUT", "/admin/derp/%d/dderc" % program, body)


def der_control_xml(mrid, start, duration, base, status=0, creation=None, reply_to=RSPS,
                    response_required="03", randomize_start=None, description="spot test"):
    """A DERControl document: base is {mode: xml text inside the element}."""
    now = int(time.time())
    modes = "".join("<%s>%s</%s>" % (k, v, k) for k, v in base.items())
    rnd = "<randomizeStart>%d</randomizeStart>" % randomize_start if randomize_start else ""
    attrs = ' replyTo="%s" responseRequired="%s"' % (reply_to, response_required) \
        if reply_to else ""
    return ('<DERControl xmlns="urn:ieee:std:2030.5:ns"%s><mRID>%s</mRID>'
            '<description>%s</description><creationTime>%d</creationTime>'
            '<EventStatus><currentStatus>%d</currentStatus><dateTime>%d</dateTime>'
            '<potentiallySuperseded>false</potentiallySuperseded></EventStatus>'
            '<interval><duration>%d</duration><start>%d</start></interval>%s'
            '<DERControlBase>%s</DERControlBase></DERControl>'
            % (attrs, mrid, description, creation if creation is not None else now, status, now,
               duration, start, rnd, modes)).encode()


class PatchingProxy:
    """Test double: mutual-TLS HTTPS proxy in front of the real server (module docstring)."""

    def __init__(self, server, port):
        self.server = server
        self.port = port
        self.url = "https://127.0.0.1:%d" % port
        self.responses = []     # (path, body bytes) of Response POSTs
        self.requests = []      # (method, path, upstream status, request body)
        self.defaults = {}      # path -> DefaultDERControl document served in the server's place
        self.spoil = None       # (path prefix, bytes): the next GET answer there is replaced
        self.cancelled = set()  # mRIDs whose EventStatus is served as cancelled (2)
        self.spoiled = 0
        self._runner = None
        self._session = None

    async def start(self):
        import aiohttp
        from aiohttp import web
        sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.server.ca)
        sctx.load_cert_chain(self.server.server_cert, self.server.server_key)
        sctx.verify_mode = ssl.CERT_REQUIRED
        cctx = ssl.create_default_context(cafile=self.server.ca)
        cctx.load_cert_chain(self.server.cert, self.server.key)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=cctx))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=sctx).start()
        return self

    async def stop(self):
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request):
        from aiohttp import web
        body = await request.read()
        path = request.path
        if request.method == "POST" and path.startswith("/rsps"):
            self.responses.append((path, body))
            self.requests.append((request.method, path, 201, body))
            return web.Response(status=201, headers={"Location": path + "/%d"
                                                     % len(self.responses)})
        if request.method == "GET" and path in self.defaults:
            self.requests.append((request.method, path, 200, b""))
            return web.Response(body=self.defaults[path], content_type="application/sep+xml")
        async with self._session.request(request.method, self.server.url + request.path_qs,
                                         data=body or None,
                                         headers={"content-type": "application/sep+xml"}) as r:
            content, status = await r.read(), r.status
            location = r.headers.get("Location")
        self.requests.append((request.method, path, status, body))
        if self.spoil is not None and request.method == "GET" and \
                path.startswith(self.spoil[0]) and status == 200:
            content = self.spoil[1]
            self.spoil = None
            self.spoiled += 1
        if self.cancelled and request.method == "GET" and status == 200 and \
                b"<DERControl" in content:
            content = self._cancel(content)
        headers = {"Location": location} if location else {}
        return web.Response(status=status, body=content, headers=headers,
                            content_type="application/sep+xml")


    def _cancel(self, content):
        """The server's document with currentStatus 2 on the controls in self.cancelled
        (the server keeps a control's first EventStatus: a re-POST is lost)."""
        from lxml import etree
        ns = "{urn:ieee:std:2030.5:ns}"
        root = etree.fromstring(content)
        for ctrl in root.iter(ns + "DERControl"):
            if ctrl.findtext(ns + "mRID", "").upper() in self.cancelled:
                status = ctrl.find(ns + "EventStatus")
                status.find(ns + "currentStatus").text = "2"
                status.find(ns + "dateTime").text = str(int(time.time()))
        return etree.tostring(root)


if __name__ == "__main__":
    if sys.argv[1:] == ["--install"]:
        try:
            print(ensure_installed())
        except RuntimeError as e:
            sys.exit("gridappsd-2030-5: %s" % e)
    else:
        sys.exit("usage: python3 tests/ieee2030_5_peer.py --install")
