"""The loopback HTTP endpoint where the VTN delivers subscription notifications.

POST <path> with `Authorization: Bearer <token>` (the bearerToken the VEN put
in its subscription) and a notification body. Answers 200 when the
notification was queued for the VEN (503 when its queue is full), 401 for a missing or wrong token, 400 (a
problem+json body saying why) for anything that is not a notification, 413
for bodies over 1 MiB. Nothing but the handler sees a notification.
"""
import hmac
import json
import logging

from aiohttp import web

from ..dr_translate import EventError
from .translate import parse_notification

PATH = "/openadr3/notify"
MAX_BODY = 1 << 20
LOG = logging.getLogger("spot.bridge.plugin.openadr3")


def _problem(status, title, detail):
    return web.Response(status=status, content_type="application/problem+json",
                        text=json.dumps({"title": title, "status": status, "detail": detail}))


class Webhook:
    def __init__(self, host, port, token, on_notification, on_reject=None):
        self.host = host
        self.port = port
        self.token = token
        self.on_notification = on_notification   # (objectType, operation, object) -> taken?
        self.on_reject = on_reject                 # async (reason, detail)
        self.received = 0
        self._runner = None

    @property
    def url(self):
        return "http://%s:%d%s" % (self.host, self.port, PATH)

    async def start(self):
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if not self.port:
            self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request):
        auth = request.headers.get("Authorization", "")
        given = auth[7:] if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            await self._reject("webhook_auth", "notification without the subscription's token")
            return _problem(401, "Unauthorized", "missing or wrong bearer token")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            await self._reject("webhook_malformed", "notification over %d bytes" % MAX_BODY)
            return _problem(413, "Payload Too Large", "at most %d bytes" % MAX_BODY)
        try:
            otype, op, obj = parse_notification(body)
        except EventError as e:
            await self._reject("webhook_malformed", str(e))
            return _problem(400, "Bad Request", str(e))
        if not self.on_notification(otype, op, obj):
            LOG.warning("openadr3: notification %s %s refused: the VEN is busy", op, otype)
            return _problem(503, "Service Unavailable", "too many notifications queued")
        self.received += 1
        return web.json_response({"status": "received"})

    async def _reject(self, reason, detail):
        if self.on_reject is not None:
            await self.on_reject(reason, detail)
