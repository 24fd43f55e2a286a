"""HTTP client of an OpenADR 3.0.1 VTN: plain aiohttp against the spec's paths.

The only module of the plugin that does network I/O towards the VTN.

- OAuth2 client credentials: POST to the token URL with a form body
  (grant_type, client_id, client_secret, scope), as the 3.0.1 document's
  /auth/token defines it (not HTTP Basic); the token is kept until a minute
  before `expires_in` runs out, and fetched again on expiry or on a 401.
- Every call returns the parsed JSON or raises VtnError (HTTP status, the
  problem's title/detail) or VtnUnreachable (connection refused, time-out).
- Optional fields are left out rather than sent as null (the schemas mark
  them nullable, but some servers reject null).
- Lists are fetched page by page (skip / limit, limit 50 as the spec caps it),
  at most MAX_PAGES pages.
"""
import asyncio
import json
import time

import aiohttp

PAGE = 50
MAX_PAGES = 200     # 10 000 objects: a server that ignores skip must not loop us forever


class VtnError(Exception):
    """The VTN answered with an error status."""

    def __init__(self, status, detail):
        Exception.__init__(self, "HTTP %d: %s" % (status, detail))
        self.status = status
        self.detail = detail


class VtnUnreachable(Exception):
    """No answer from the VTN (or the token server)."""


class AuthError(VtnError):
    """The token server refused our credentials (or answered nonsense)."""


def _detail(status, text):
    try:
        doc = json.loads(text)
    except ValueError:
        return text[:200] or "(no body)"
    if isinstance(doc, dict):
        parts = [str(doc[k]) for k in ("error", "title", "detail", "error_description")
                 if doc.get(k)]
        if parts:
            return ": ".join(parts)[:300]
    return text[:200]


def _strip_nulls(x):
    if isinstance(x, dict):
        return {k: _strip_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_strip_nulls(v) for v in x]
    return x


class VtnClient:
    def __init__(self, base_url, token_url, client_id, client_secret, scope="",
                 timeout=20.0, ssl=None, clock=time.monotonic):
        self.base = base_url.rstrip("/")
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.timeout = timeout
        self.ssl = ssl
        self.clock = clock
        self._session = None
        self._token = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self.tokens_fetched = 0
        self.requests = 0

    async def close(self):
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self):
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=5),
                connector=aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else True))
        return self._session

    # ------------------------------------------------------------ OAuth2

    async def token(self, renew=False):
        async with self._token_lock:
            if renew or self._token is None or self.clock() >= self._token_until:
                await self._fetch_token()
            return self._token

    async def _fetch_token(self):
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret}
        if self.scope:
            form["scope"] = self.scope
        try:
            async with self._sess().post(self.token_url, data=form,
                                         headers={"Accept": "application/json"}) as r:
                text = await r.text()
                status = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise VtnUnreachable("token server %s: %s" % (self.token_url,
                                                          e or e.__class__.__name__)) from None
        if status in (400, 401, 403):
            raise AuthError(status, _detail(status, text))
        if status != 200:
            raise VtnError(status, "token server: %s" % _detail(status, text))
        try:
            doc = json.loads(text)
            tok = doc["access_token"]
            if not isinstance(tok, str) or not tok or \
                    str(doc.get("token_type", "")).lower() != "bearer":
                raise ValueError("not a bearer token")
            life = doc.get("expires_in")
            life = 3600.0 if life is None else float(life)
        except (ValueError, KeyError, TypeError) as e:
            raise AuthError(status, "token answer is not an OAuth2 bearer token: %s" % e) \
                from None
        self._token = tok
        self._token_until = self.clock() + max(life - 60.0, life / 2)
        self.tokens_fetched += 1

    # ------------------------------------------------------------ requests

    async def request(self, method, path, body=None, params=None):
        """JSON of the answer (None if empty); VtnError / VtnUnreachable otherwise."""
        data = None if body is None else json.dumps(_strip_nulls(body))
        for attempt in (0, 1):
            tok = await self.token(renew=attempt == 1)
            headers = {"Authorization": "Bearer " + tok, "Accept": "application/json"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            self.requests += 1
            try:
                async with self._sess().request(method, self.base + path, data=data,
                                                params=params, headers=headers) as r:
                    text = await r.text()
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                raise VtnUnreachable("VTN %s: %s" % (self.base, e or e.__class__.__name__)) \
                    from None
            if status == 401 and attempt == 0:   # token expired early or revoked: once more
                continue
            if not 200 <= status < 300:
                raise VtnError(status, _detail(status, text))
            if not text:
                return None
            try:
                return json.loads(text)
            except ValueError:
                raise VtnError(status, "answer is not JSON: %r" % text[:100]) from None

    async def list(self, path, params=None):
        """Every object of a list resource, page by page."""
        out = []
        for _ in range(MAX_PAGES):
            q = dict(params or {}, skip=len(out), limit=PAGE)
            page = await self.request("GET", path, params=q)
            if not isinstance(page, list):
                raise VtnError(200, "%s: answer is not a list" % path)
            out.extend(page)
            if len(page) < PAGE:
                return out
        raise VtnError(200, "%s: more than %d pages" % (path, MAX_PAGES))

    # ------------------------------------------------------------ the VEN's calls

    async def programs(self):
        return await self.list("/programs")

    async def events(self, program_id=None):
        return await self.list("/events", {"programID": program_id} if program_id else None)

    async def find_ven(self, ven_name):
        vens = await self.list("/vens", {"venName": ven_name})
        for v in vens:
            if isinstance(v, dict) and v.get("venName") == ven_name:
                return v
        return None

    async def create_ven(self, ven_name, attributes=None):
        return await self.request("POST", "/vens", {"objectType": "VEN", "venName": ven_name,
                                                    "attributes": attributes})

    async def resources(self, ven_id):
        return await self.list("/vens/%s/resources" % ven_id)

    async def create_resource(self, ven_id, name, attributes=None):
        return await self.request("POST", "/vens/%s/resources" % ven_id,
                                  {"objectType": "RESOURCE", "resourceName": name,
                                   "venID": ven_id, "attributes": attributes})

    async def create_report(self, report):
        return await self.request("POST", "/reports", dict(report, objectType="REPORT"))

    async def update_report(self, report_id, report):
        return await self.request("PUT", "/reports/%s" % report_id,
                                  dict(report, objectType="REPORT"))

    async def create_subscription(self, client_name, program_id, callback_url, bearer, objects):
        return await self.request("POST", "/subscriptions", {
            "objectType": "SUBSCRIPTION", "clientName": client_name, "programID": program_id,
            "objectOperations": [{"objects": list(objects),
                                  "operations": ["POST", "PUT", "DELETE"],
                                  "callbackUrl": callback_url, "bearerToken": bearer}]})

    async def delete_subscription(self, sub_id):
        return await self.request("DELETE", "/subscriptions/%s" % sub_id)
