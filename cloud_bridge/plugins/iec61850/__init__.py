"""IEC 61850 for the SPOT bridge: the fleet served as an MMS server
(IEC 61850-8-1), one logical device per device, from the model of
cloud_bridge/iec61850 (the SCL of `spot iec61850 scl` is the same model).

    [plugins.iec61850]
    role = "aggregator"        # the plugin's role on every device: controls need
                               # aggregator (or owner / installer); monitor reads only
    address = "127.0.0.1"      # 102 is the standard port; it needs privileges
    port = 10102
    ied_name = "SPOT"
    groups = ["feeder-12"]     # devices taking part (none and no devices: all)
    devices = ["hp-1"]
    control_timeout = 10       # seconds a control / write waits for the device
    idle_timeout = 600         # drop a client that sends nothing for this long
    send_timeout = 10          # drop a client that reads nothing for this long
    report_blocks = 1000       # report control blocks clients may configure, all LDs
                               # together (each holds state; a BRCB up to 256 KB buffered)

A device that registers later is added to the running server (its own
logical device; clients see it in the next GetServerDirectory). Entry point: iec61850 =
"spot.cloud_bridge.plugins.iec61850:factory" in group spot.bridge.plugins.
"""
import asyncio

from ...iec61850.acsi import Acsi
from ...plugin_api import member_filter
from ...tasks import cancel_and_wait

OPTIONS = {"address": str, "port": int, "ied_name": str, "groups": list, "devices": list,
           "control_timeout": (int, float), "idle_timeout": (int, float),
           "send_timeout": (int, float), "report_blocks": int}
DEFAULT_PORT = 10102


def check_options(options):
    """ValueError unless every option is known and of its type."""
    for key, value in options.items():
        kind = OPTIONS.get(key)
        if kind is None:
            raise ValueError("iec61850: unknown option %r (known: %s)"
                             % (key, ", ".join(sorted(OPTIONS))))
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError("iec61850: option %s has the wrong type" % key)
    port = options.get("port", DEFAULT_PORT)
    if not 0 <= port <= 65535:
        raise ValueError("iec61850: port must be 0..65535")
    if options.get("report_blocks", 1) < 1:
        raise ValueError("iec61850: report_blocks must be at least 1")
    for key in ("groups", "devices"):
        if not all(isinstance(x, str) for x in options.get(key, [])):
            raise ValueError("iec61850: %s must be a list of strings" % key)
    return options


class Iec61850Plugin:
    def __init__(self, ctx):
        self.ctx = ctx
        self.options = check_options(dict(ctx.options))
        self.host = self.options.get("address", "127.0.0.1")
        self.port = self.options.get("port", DEFAULT_PORT)
        self.acsi = Acsi(ctx, self.options.get("ied_name", "SPOT"), member_filter(self.options),
                         self.options.get("control_timeout", 10.0))
        self.service = None
        self._dirty = set()
        self._wake = asyncio.Event()
        self._rebuild = False
        self._task = None
        self._loading = None    # the task loading every LD's values after a (re)start
        self._fetching = set()
        self._fetches = set()   # name plate READs running
        self._fetch_slots = asyncio.Semaphore(8)

    @property
    def bound_port(self):
        return self.service.port if self.service is not None else None

    @property
    def settled(self):
        """No device change waits to be written into the served model."""
        return not self._dirty and (self.service is None or self.service.idle())

    def serving(self, device):
        """Is the device's logical device in the running server yet?"""
        ld = self.acsi.model.by_device.get(device)
        return (ld is not None and self.service is not None
                and self.service.served.loaded(ld.domain))

    async def start(self):
        await self._serve()
        self._task = asyncio.ensure_future(self._refresh_forever())

    async def stop(self):
        await cancel_and_wait([t for t in (self._task, self._loading) if t is not None]
                              + list(self._fetches))
        await self.acsi.close()
        if self.service is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.service.stop)
            self.service = None

    async def _serve(self):
        from .mms import MmsService   # open61850 is needed only once the plugin runs
        await self.acsi.refresh()
        loop = asyncio.get_running_loop()
        old, self.service = self.service, None
        if old is not None:
            await loop.run_in_executor(None, old.stop)
        service = MmsService(self.acsi, loop, self.host, self.port,
                             self.options.get("idle_timeout", 600.0),
                             self.options.get("send_timeout", 10.0),
                             self.options.get("report_blocks", 1000))
        self.service = service.start()
        self.port = self.service.port   # port 0: keep the one picked for restarts
        await cancel_and_wait([self._loading] if self._loading is not None else [])
        self._loading = asyncio.ensure_future(self._load(service, list(self.acsi.model.lds)))
        self.ctx.log.info("IEC 61850 server %s on %s:%d with %d logical devices",
                          self.acsi.ied_name, self.host, self.port, len(self.acsi.model.lds))

    async def _load(self, service, domains, chunk=100):
        """Every LD's values, chunk LDs at a time, each chunk applied before the next is
        read (the server listens meanwhile; an LD not loaded yet answers reads with
        temporarily-unavailable); then the devices' name plates, in the background."""
        for first in range(0, len(domains), chunk):
            part = [d for d in domains[first:first + chunk] if d in self.acsi.model.lds]
            got = await asyncio.gather(*(self.acsi.ld_values(d) for d in part))  # store reads queue up
            await asyncio.wrap_future(service.push_many(list(zip(part, got))))
        self._fetch_name_plates(self.acsi.model.by_device)

    def _fetch_name_plates(self, devices):
        """READ the name plate of each of these devices not read yet, in the background."""
        for device in devices:
            if device not in self.acsi.fetched and device not in self._fetching:
                self._fetching.add(device)
                task = asyncio.ensure_future(self._fetch_name_plate(device))
                self._fetches.add(task)
                task.add_done_callback(self._fetches.discard)

    async def _fetch_name_plate(self, device):
        try:
            async with self._fetch_slots:   # a few at a time: controls go first
                fetched = await self.acsi.fetch_name_plate(device)
            if fetched:
                self._dirty.add(device)
                self._wake.set()
        except Exception:
            self.ctx.log.exception("reading the name plate of %s failed", device)
        finally:
            self._fetching.discard(device)

    async def on_event(self, event):
        device = event.get("device")
        kind = event.get("type")
        if kind == "device" and device not in self.acsi.model.by_device:
            self._rebuild = True
        elif kind in ("telemetry", "presence") and device in self.acsi.model.by_device:
            self._dirty.add(device)
        else:
            return
        self._wake.set()

    async def _refresh_forever(self):
        while True:
            await self._wake.wait()
            await asyncio.sleep(0.05)   # gather a burst of events into one update
            self._wake.clear()
            try:
                await self._refresh()
            except Exception:   # keep serving the model we have
                self.ctx.log.exception("updating the IEC 61850 model failed")

    async def _refresh(self):
        if self._rebuild:
            self._rebuild = False
            before = {d: ld.domain for d, ld in self.acsi.model.by_device.items()}
            model = await self.acsi.refresh()
            now = {d: ld.domain for d, ld in model.by_device.items()}
            if any(now.get(d) != dom for d, dom in before.items()) or self.service is None:
                self._dirty.clear()
                await self._serve()     # an LD renamed (or nothing served): restart
                return
            added = [dom for d, dom in now.items() if d not in before]
            if added:
                await asyncio.get_running_loop().run_in_executor(
                    None, self.service.add, model, added)
                self._dirty.update(d for d in now if d not in before)
                self._fetch_name_plates(d for d in now if d not in before)
        dirty, self._dirty = self._dirty, set()
        for device in dirty:
            ld = self.acsi.model.by_device.get(device)
            if ld is not None and self.service is not None:
                self.service.push(ld.domain, await self.acsi.ld_values(ld.domain))


def factory(ctx):
    return Iec61850Plugin(ctx)
