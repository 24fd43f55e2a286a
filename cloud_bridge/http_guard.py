"""What the bridge's HTTP side checks before any handler runs, and the headers every
answer carries: the defences against browsers turned against the API.

- Host: the request must name the listening socket (its IP literal, or
  `localhost` on a loopback socket, with its port) or one of the configured
  [access] hosts: a page whose name was re-bound to the bridge's address (DNS
  rebinding) gets 403.
- Origin, when a browser sends one, must be such a host too: a page of another
  origin gets 403, whatever it sends.
- State-changing methods (POST, PUT, PATCH) need `Content-Type:
  application/json`: the bodies a cross-origin page can send without a CORS
  preflight (text/plain, forms) get 415. No CORS header is ever sent.
- Every answer forbids framing and MIME sniffing and carries a strict
  Content-Security-Policy (the dashboard loads only its own script and style).
- A bridge whose HTTP side listens beyond loopback must have API tokens
  (check_exposure, called by config.load).
- Request bodies: JSON numbers that do not fit a double or 64 bits, strings with
  lone surrogates and nesting deeper than any request needs are refused where
  the body is parsed (json_float / json_int hooks, check_body): no handler ever
  sees them.

Errors are raised as http_views.ApiError: the API middleware answers them as
{"error": ...} like every other refusal.
"""
import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import time
from urllib.parse import urlsplit

from aiohttp.http_exceptions import HttpProcessingError

from .http_views import ApiError

CHANGING = ("POST", "PUT", "PATCH")
COUNTED = (403, 408, 415, 429)   # refusals counted in /metrics (http_refused)
IDLE_TIMEOUT = 15.0      # seconds a connection may idle or take to send its headers
SERVER_OPTIONS = {"keepalive_timeout": IDLE_TIMEOUT}   # aiohttp AppRunner keyword arguments
BODY_TIMEOUT = 15.0      # seconds a client may take to send a request body
QUEUE_QUOTA = 32         # commands a non-owner may have queued for one device
UNLIMITED = ("owner",)   # roles whose commands the quota does not hold back
MAX_INT = 2 ** 64        # JSON integers beyond +-2^64 fit no SPOT (CBOR) value
MAX_DEPTH = 32           # JSON nesting of a request body (a plan schedule needs 5)
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
}


# ------------------------------------------------------------------ exposure

def is_loopback(host):
    """Is host (a name or an address) this machine's loopback only?"""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False    # a name, or the any-address: reachable from elsewhere


def check_exposure(http_host, tokens):
    """ValueError (one line) if the API would listen beyond loopback without tokens."""
    if not tokens and not is_loopback(http_host):
        raise ValueError(
            "http = %r listens beyond loopback, and without [access] tokens every caller "
            "would be the operator: add tokens = { \"<secret>\" = \"operator\" } to [access] "
            "or listen on 127.0.0.1" % http_host)


_HOST_NAME = re.compile(r"^([a-z0-9_-]+(\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$")


def check_hosts(hosts):
    """ValueError unless [access] hosts is a list of host names, "name:port" or "[v6]:port"."""
    if type(hosts) is not list or not all(
            type(h) is str and _HOST_NAME.match(h.lower()) for h in hosts):
        raise ValueError("[access] hosts must be a list of host names such as "
                         "[\"bridge.example.net\", \"proxy.example.net:443\"], not %r"
                         % (hosts,))


# ------------------------------------------------------------------ Host and Origin

def _host_port(text, default_port):
    """(lower-case host, port) of "host", "host:port", "[v6]" or "[v6]:port"; None if bad."""
    text = text.strip().lower()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if port and not (port.isdigit() and port.isascii() and len(port) <= 5):
        return None
    return host, int(port) if port else default_port


def _socket_address(request):
    sock = request.transport.get_extra_info("sockname") if request.transport else None
    if not sock:
        return None, None
    local = str(sock[0]).lower()
    try:    # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
        mapped = getattr(ipaddress.ip_address(local.split("%")[0]), "ipv4_mapped", None)
    except ValueError:
        mapped = None
    return (str(mapped) if mapped else local), sock[1]


def _allowed(request, configured, host, port):
    """Does (host, port) name this bridge: the socket it was reached on, or a configured name?"""
    for entry in configured or ():
        named = _host_port(entry, None)
        if named is not None and named[0] == host and named[1] in (None, port):
            return True
    local, local_port = _socket_address(request)
    if local is None or port != local_port:
        return False
    if host == local:
        return True
    return host == "localhost" and is_loopback(local)


def check_host_and_origin(request, configured_hosts):
    """ApiError 403 unless Host (when sent) and Origin (when sent) name this bridge."""
    host = request.headers.get("Host")
    if host is not None:
        named = _host_port(host, 80)
        if named is None or not _allowed(request, configured_hosts, *named):
            raise ApiError(403, "this bridge does not answer to that host name (Host header); "
                                "add it to [access] hosts if it is yours")
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            u = urlsplit(origin)
            default = {"http": 80, "https": 443}.get(u.scheme)
            named = _host_port(u.netloc, default) if default and not u.path else None
        except ValueError:
            named = None
        if named is None or not _allowed(request, configured_hosts, *named):
            raise ApiError(403, "requests from pages of another origin are refused "
                                "(Origin header)")


def check_content_type(request):
    """ApiError 415 for a state-changing request whose body is not declared JSON."""
    if request.method in CHANGING and request.content_type.lower() != "application/json":
        raise ApiError(415, "send the body as Content-Type: application/json")


async def add_security_headers(request, response):
    """aiohttp on_response_prepare: the browser-facing headers on every answer."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


# ------------------------------------------------------------------ server log

class PeerErrorFilter(logging.Filter):
    """On aiohttp's server logger: a request that cannot even be parsed is the peer's
    fault, not the bridge's. Such records lose their traceback and become one-line
    warnings, at most PER_MINUTE a minute (the rest dropped, and counted in the next
    line), so garbage on the port cannot flood the log."""

    PER_MINUTE = 10

    def __init__(self, clock=time.monotonic):
        super().__init__()
        self.clock = clock
        self.window = None
        self.logged = 0
        self.dropped = 0

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self.clock()
        if self.window is None or now - self.window >= 60:
            self.window, self.logged = now, 0
        if self.logged >= self.PER_MINUTE:
            self.dropped += 1
            return False
        self.logged += 1
        reason = " ".join(str(getattr(exc, "message", "") or exc).split())[:120]
        record.msg, record.args = "unparsable HTTP request (%d more dropped): %s %s", (
            self.dropped, getattr(exc, "code", 400), reason)
        self.dropped = 0
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_peer_errors(logger=logging.getLogger("aiohttp.server")):
    """Install PeerErrorFilter on aiohttp's server logger once."""
    if not any(isinstance(f, PeerErrorFilter) for f in logger.filters):
        logger.addFilter(PeerErrorFilter())


# ------------------------------------------------------------------ queue quota

async def check_queue_quota(bridge, actor, device):
    """ApiError 429 if a non-owner actor already has QUEUE_QUOTA commands queued for
    the device: a device takes its commands one at a time, so a flood of reads
    from an aggregator or monitor would hold the owner's commands behind it."""
    if await bridge.store.role_of(device, actor) in UNLIMITED:
        return
    queued = await bridge.store.list_commands(device, limit=1000, status="queued")
    if sum(1 for c in queued if c.actor == actor) >= QUEUE_QUOTA:
        raise ApiError(429, "%s has %d commands queued for %s already: wait for them "
                            "(or their expiry)" % (actor, QUEUE_QUOTA, device))


# ------------------------------------------------------------------ tokens

def same_secret(a, b):
    """Constant-time equality of two tokens, whatever their lengths (hashed first)."""
    da = hashlib.sha256(a.encode("utf-8", "surrogatepass")).digest()
    db = hashlib.sha256(b.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(da, db)


# ------------------------------------------------------------------ JSON bodies

async def read_body(request):
    """The whole request body; ApiError 408 if it takes longer than BODY_TIMEOUT (a
    client trickling its body would hold its connection and handler for ever)."""
    try:
        return await asyncio.wait_for(request.read(), BODY_TIMEOUT)
    except asyncio.TimeoutError:
        raise ApiError(408, "the request body took more than %g s to arrive" % BODY_TIMEOUT)


def json_float(text):
    """json.loads parse_float: a finite double, else 400 (1e400 would be infinity)."""
    v = float(text)
    if not math.isfinite(v):
        raise ApiError(400, "a number in the request body is too large for a double")
    return v


def json_int(text):
    """json.loads parse_int: an integer within +-2^64, else 400."""
    if len(text) > 21:
        raise ApiError(400, "an integer in the request body is beyond +-2^64")
    v = int(text)
    if not -MAX_INT <= v <= MAX_INT:
        raise ApiError(400, "an integer in the request body is beyond +-2^64")
    return v


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_body(value):
    """ApiError 400 if a decoded JSON value nests deeper than MAX_DEPTH or has a string
    (or key) with a lone surrogate (\\ud800-\\udfff escapes that pair with nothing:
    not Unicode text). Iterative: any depth json.loads accepts is safe here."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is str:
            if _SURROGATE.search(v):
                raise ApiError(400, "the request body has a string with a lone surrogate "
                                    "(\\ud800-\\udfff): not valid Unicode")
        elif t is dict or t is list:
            if depth >= MAX_DEPTH:
                raise ApiError(400, "the request body is nested too deeply (at most %d levels)"
                               % MAX_DEPTH)
            if t is dict:
                stack.extend((k, depth) for k in v)
                stack.extend((x, depth + 1) for x in v.values())
            else:
                stack.extend((x, depth + 1) for x in v)
