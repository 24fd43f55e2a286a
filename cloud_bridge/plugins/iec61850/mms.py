"""The fleet model served over MMS (IEC 61850-8-1) by open61850's server.

The served model (served.py) is built from the SCL that
cloud_bridge/iec61850/scl.py writes from model.py, one LD per shape, so the
file a utility imports and what a client browses are the same. open61850
runs one thread per client; this module is the seam between those threads
and the bridge's event loop:

- values: the loop computes them (model.values) and hands them to one
  updater thread, which writes the changed ones into the served model (its
  report engine, FleetReports, then sends URCB / BRCB reports); a client
  that stops reading never blocks the loop;
- controls: open61850's ControlEngine runs the control models (direct /
  SBO, normal / enhanced security); its check calls Acsi.check_control (so
  a refused control gets its AddCause before anything is queued) and its
  handler runs Acsi.operate on the loop, blocking the client's thread for
  normal security, or returning IN_EXECUTION and ending the command with
  ControlEngine.finish (CommandTermination) for enhanced security;
- growth: a device that registers later is added to the running server
  (add: a Device of its shape, the shape's SCL parsed if it is new), no
  restart;
- SetDataValues: a write hook turns writes of settings (SP, and the name
  plate location) into Acsi.write and refuses every other write.
"""
import asyncio
import concurrent.futures
import logging
import queue
import socket
import struct
import threading

from open61850.data import BoolData, FloatData, IntData, StructureData, UIntData
from open61850.mms import pdu
from open61850.server import MmsServer
from open61850.server import control as OC
from open61850.server.model import _fits as fits_type

from ...iec61850 import acsi as A
from ...iec61850 import cdc as C
from ...iec61850 import model as X
from .served import FleetReports, ServedFleet

log = logging.getLogger("spot.bridge.plugin.iec61850")


def from_served(data):
    """A Python value of an open61850 value (ctlVal: bool, int, or {f: float})."""
    if isinstance(data, StructureData):
        inner = data.members[0] if data.members else None
        return {"f": inner.value} if isinstance(inner, FloatData) else from_served(inner)
    if isinstance(data, (BoolData, IntData, UIntData, FloatData)):
        return data.value
    return getattr(data, "value", data)


class _BridgeMmsServer(MmsServer):
    """open61850's server over a ServedFleet, with socket limits: a client that
    sends nothing for idle_timeout seconds, or reads nothing for send_timeout, is
    dropped (overrides MmsServer._serve, open61850 0.9's per-client entry, to set
    them); its report engine is FleetReports, its name lists the fleet's."""

    idle_timeout = 600.0
    send_timeout = 10.0

    report_blocks = FleetReports.max_blocks

    def start(self):
        if self.reports is None and self.reports_enabled:
            self.reports = FleetReports(self)
            self.reports.max_blocks = self.report_blocks
        super().start()

    def names(self, object_class, domain):
        fleet = self.model
        if object_class == pdu.OBJECT_CLASS_DOMAIN:
            return fleet.domains() if domain is None else []
        device = fleet.devices.get(domain) if domain is not None else None
        if device is None:
            return []
        if object_class == pdu.OBJECT_CLASS_NAMED_VARIABLE:
            return device.shape.names
        if object_class == pdu.OBJECT_CLASS_NAMED_VARIABLE_LIST:
            return device.shape.dataset_names
        return []

    def _serve(self, client, peer):
        for opt, secs in ((socket.SO_RCVTIMEO, self.idle_timeout),
                          (socket.SO_SNDTIMEO, self.send_timeout)):
            if secs:
                client.setsockopt(socket.SOL_SOCKET, opt,
                                  struct.pack("ll", int(secs), int(secs % 1 * 1e6)))
        super()._serve(client, peer)


class _Every:
    """ControlEngine.checks / .handlers for every control object of the fleet:
    get(key) asks make(domain, item) instead of a dict of 100 000 entries."""

    def __init__(self, make):
        self.make = make

    def get(self, key, default=None):
        got = self.make(*key)
        return default if got is None else got


class MmsService:
    """One running MMS server for one model (rebuilt when an LD is renamed)."""

    def __init__(self, acsi, loop, host, port, idle_timeout=600.0, send_timeout=10.0,
                 report_blocks=FleetReports.max_blocks):
        self.acsi = acsi
        self.loop = loop
        self.host, self.port = host, port
        self.model = acsi.model
        self.served = ServedFleet(self.model.ied_name, host, port)
        self.served.add(self.model.lds.values())
        self.server = _BridgeMmsServer(self.served, host, port, vendor="SPOT",
                                       model_name="spot-bridge")
        self.server.idle_timeout, self.server.send_timeout = idle_timeout, send_timeout
        self.server.report_blocks = report_blocks
        self._updates = queue.Queue()
        self._updater = threading.Thread(target=self._apply_forever, name="iec61850-values",
                                         daemon=True)

    # ------------------------------------------------------------ life

    def start(self):
        self.server.start()
        self.port = self.server.port
        engine = self.server.controls
        engine.checks = _Every(lambda domain, item: self._check)
        engine.handlers = _Every(self._handler_of)
        self.server.write_hooks.insert(0, self._type_guard)
        self.server.write_hooks.append(self._on_write)
        self._updater.start()
        return self

    def add(self, model, domains):
        """Serve the logical devices `domains` of `model` (a newer build of the same
        fleet) alongside those already served, without a restart; their values come
        with the next push."""
        self.served.add([model.lds[d] for d in domains])
        self.model = model

    def stop(self):
        self._updates.put(None)   # a push_many queued after this is never done: stop cancels its waiter
        self.server.stop()
        self._updater.join(timeout=5)

    # ------------------------------------------------------------ values

    def push(self, domain, values):
        """Queue the LD's values; the updater writes those that changed."""
        self._updates.put([(domain, values)])

    def idle(self):
        """Nothing queued for the updater (it may still be writing the last job)."""
        return self._updates.empty()

    def push_many(self, jobs):
        """Queue [(domain, values)]; a concurrent Future done once they are written."""
        done = concurrent.futures.Future()
        self._updates.put(jobs + [done])
        return done

    def _apply_forever(self):
        while True:
            jobs = self._updates.get()
            if jobs is None:
                return
            for job in jobs:
                if isinstance(job, concurrent.futures.Future):
                    job.set_result(None)
                    continue
                try:
                    self.served.push(*job)
                except Exception:
                    log.exception("updating %s failed", job[0])

    # ------------------------------------------------------------ controls

    def _handler_of(self, domain, item):
        """The handler of a control object (by its control model), None if it has none."""
        try:
            do = X.find(self.model, domain, item).obj
        except (KeyError, AttributeError):
            return None
        if not isinstance(do, X.DO) or do.ctl_model in (None, C.STATUS_ONLY):
            return None
        return self._handler(do.ctl_model)

    def _check(self, command):
        try:
            self.acsi.check_control(command.domain, command.object_item,
                                    from_served(command.ctl_val))
        except A.ControlRefused as e:
            log.info("control %s refused: %s", command.reference, e.detail)
            return e.add_cause
        return None

    def _operate(self, command):
        return asyncio.run_coroutine_threadsafe(
            self.acsi.operate(command.domain, command.object_item, from_served(command.ctl_val)),
            self.loop)

    @staticmethod
    def _cause(future):
        try:
            future.result(timeout=0)
            return None
        except A.ControlRefused as e:
            return e.add_cause
        except Exception:
            log.exception("control failed")
            return A.ADD_UNKNOWN

    def _handler(self, ctl_model):
        enhanced = ctl_model in (C.DIRECT_ENHANCED, C.SBO_ENHANCED)
        engine = self.server.controls

        def handler(command):
            future = self._operate(command)
            if enhanced:   # accepted now; CommandTermination when the device has answered
                ref = "%s/%s" % (command.domain, command.object_item)
                future.add_done_callback(
                    lambda f: threading.Thread(target=engine.finish, args=(ref, self._cause(f)),
                                               daemon=True).start())
                return OC.IN_EXECUTION
            try:
                future.result(timeout=self.acsi.control_timeout + 5)
            except Exception:
                pass
            return self._cause(future) if future.done() else A.ADD_TIME_LIMIT_OVER
        return handler

    # ------------------------------------------------------------ SetDataValues

    def _type_guard(self, connection, name, value):
        """Refuse a write whose value does not have the variable's type (type-inconsistent)
        before any engine sees it (open61850's ControlEngine assumes it has)."""
        node = self.served.node(name)
        if node is None:
            return A.OBJECT_NON_EXISTENT
        return None if fits_type(node.mms_type, value) else A.TYPE_INCONSISTENT

    def _on_write(self, connection, name, value):
        """Writes the engines before did not take: settings go to the device, the rest
        is refused (nothing in the served model changes without the device)."""
        domain, item = name.domain or "", name.item
        if domain not in self.model.lds:
            return A.OBJECT_NON_EXISTENT
        py = from_served(value)
        try:
            self.acsi.check_write(domain, item, py)
        except A.AcsiError as e:
            log.info("write %s/%s refused: %s", domain, item, e.detail)
            return e.code
        future = asyncio.run_coroutine_threadsafe(self.acsi.write(domain, item, py), self.loop)
        try:
            future.result(timeout=self.acsi.control_timeout + 5)
        except A.AcsiError as e:
            return e.code
        except Exception:
            log.exception("write %s/%s failed", domain, item)
            return A.TEMPORARILY_UNAVAILABLE
        self.served.set(name, value)   # the device took it: show it until its next report
        return True
