"""The fleet model served over MMS (IEC 61850-8-1) by open61850's server.

The served model is built from the SCL that cloud_bridge/iec61850/scl.py
writes from model.py, so the file a utility imports and what a client
browses are the same. open61850 runs one thread per client; this module is
the seam between those threads and the bridge's event loop:

- values: the loop computes them (model.values) and hands them to one
  updater thread, which writes the changed ones into the served model (its
  report engine then sends URCB / BRCB reports); a client that stops
  reading never blocks the loop;
- controls: open61850's ControlEngine runs the control models (direct /
  SBO, normal / enhanced security); its check calls Acsi.check_control (so
  a refused control gets its AddCause before anything is queued) and its
  handler runs Acsi.operate on the loop, blocking the client's thread for
  normal security, or returning IN_EXECUTION and ending the command with
  ControlEngine.finish (CommandTermination) for enhanced security;
- growth: a device that registers later is added to the running server
  (add: its LD parsed from its own SCL and merged into the served model,
  its report control blocks registered), no restart;
- SetDataValues: a write hook turns writes of settings (SP, and the name
  plate location) into Acsi.write and refuses every other write.
"""
import asyncio
import io
import logging
import queue
import socket
import struct
import threading
from datetime import datetime, timezone

from open61850.data import BoolData, FloatData, IntData, StructureData, TimestampData, UIntData
from open61850.server import IedModel, MmsServer
from open61850.server import control as OC
from open61850.server.reporting import ReportControl
from open61850.server.model import _fits as fits_type

from ...iec61850 import acsi as A
from ...iec61850 import cdc as C
from ...iec61850 import model as X
from ...iec61850.scl import write_scl

log = logging.getLogger("spot.bridge.plugin.iec61850")


def _quality_int(mask):
    """A model quality mask as the integer open61850 makes a 13-bit bit-string of."""
    return sum(1 << (X.Q_BITS - 1 - i) for i in range(X.Q_BITS) if mask >> i & 1)


def to_served(btype, value):
    """A model value as what open61850's IedModel.set takes for a basic type."""
    if btype == "Quality":
        return _quality_int(value)
    if btype == "Timestamp":
        return TimestampData(datetime.fromtimestamp(max(0.0, value), timezone.utc))
    return value


def from_served(data):
    """A Python value of an open61850 value (ctlVal: bool, int, or {f: float})."""
    if isinstance(data, StructureData):
        inner = data.members[0] if data.members else None
        return {"f": inner.value} if isinstance(inner, FloatData) else from_served(inner)
    if isinstance(data, (BoolData, IntData, UIntData, FloatData)):
        return data.value
    return getattr(data, "value", data)


class _BridgeMmsServer(MmsServer):
    """open61850's server with socket limits: a client that sends nothing for
    idle_timeout seconds, or reads nothing for send_timeout, is dropped
    (overrides MmsServer._serve, open61850 0.9's per-client entry, to set them)."""

    idle_timeout = 600.0
    send_timeout = 10.0

    def _serve(self, client, peer):
        for opt, secs in ((socket.SO_RCVTIMEO, self.idle_timeout),
                          (socket.SO_SNDTIMEO, self.send_timeout)):
            if secs:
                client.setsockopt(socket.SOL_SOCKET, opt,
                                  struct.pack("ll", int(secs), int(secs % 1 * 1e6)))
        super()._serve(client, peer)


class MmsService:
    """One running MMS server for one model (rebuilt when the model changes)."""

    def __init__(self, acsi, loop, host, port, idle_timeout=600.0, send_timeout=10.0):
        self.acsi = acsi
        self.loop = loop
        self.host, self.port = host, port
        self.model = acsi.model
        self.served = IedModel.from_scl(io.BytesIO(write_scl(self.model, host, port)))
        self.server = _BridgeMmsServer(self.served, host, port, vendor="SPOT",
                                       model_name="spot-bridge")
        self.server.idle_timeout, self.server.send_timeout = idle_timeout, send_timeout
        self._pushed = {}           # domain -> {item: value} as last written
        self._updates = queue.Queue()
        self._updater = threading.Thread(target=self._apply_forever, name="iec61850-values",
                                         daemon=True)
        self._btypes = {}           # (domain, item) -> btype
        self._index(self.model.lds.values())

    def _index(self, lds):
        for ld in lds:
            for ln in ld.lns.values():
                for item, _fc, da, _do in X.leaves(ln):
                    self._btypes[(ld.domain, item)] = da.btype

    # ------------------------------------------------------------ life

    def start(self):
        self.server.start()
        self.port = self.server.port
        self._hook_controls()
        self.server.write_hooks.insert(0, self._type_guard)
        self.server.write_hooks.append(self._on_write)
        self._updater.start()
        return self

    def add(self, model, domains):
        """Serve the logical devices `domains` of `model` (a newer build of the same
        fleet) alongside those already served, without a restart; their values come
        with the next push. Runs the SCL parsing on the caller's thread."""
        part = X.Model(model.ied_name)
        part.lds = {d: model.lds[d] for d in domains}
        sub = IedModel.from_scl(io.BytesIO(write_scl(part, self.host, self.port)))
        engine = self.server.reports
        with self.served.lock:
            for d in domains:
                self.served.logical_devices[d] = sub.logical_devices[d]
            self.served.data_sets.update(sub.data_sets)
            for d in domains:
                for ln in sub.logical_devices[d].values():
                    for fc in ("BR", "RP"):
                        blocks = ln.child(fc)
                        for block in (blocks.children.values() if blocks is not None else ()):
                            engine.controls[(d, block.item)] = ReportControl(engine, d, block)
        self.model = model
        self._index(part.lds.values())
        self._hook_controls(part.lds.values())

    def stop(self):
        self._updates.put(None)
        self.server.stop()
        self._updater.join(timeout=5)

    # ------------------------------------------------------------ values

    def push(self, domain, values):
        """Queue the LD's values; the updater writes those that changed."""
        self._updates.put((domain, values))

    def _apply_forever(self):
        while True:
            job = self._updates.get()
            if job is None:
                return
            try:
                self._apply(*job)
            except Exception:
                log.exception("updating %s failed", job[0])

    def _apply(self, domain, values):
        last = self._pushed.setdefault(domain, {})
        changed = [(k, v) for k, v in values.items() if last.get(k, object()) != v]
        if not changed:
            return
        with self.served.batch():
            for item, v in changed:
                btype = self._btypes.get((domain, item))
                if btype is None or item.split("$")[1] == "CO":
                    continue
                try:
                    self.served.set("%s/%s" % (domain, item), to_served(btype, v))
                except (TypeError, ValueError, KeyError, OverflowError) as e:
                    log.warning("%s/%s: %r not served: %s", domain, item, v, e)
                    continue
                last[item] = v

    # ------------------------------------------------------------ controls

    def _hook_controls(self, lds=None):
        engine = self.server.controls
        for ld in (self.model.lds.values() if lds is None else lds):
            for ln in ld.lns.values():
                for do in ln.dos.values():
                    if do.controllable and do.ctl_model not in (None, C.STATUS_ONLY):
                        ref = "%s/%s$CO$%s" % (ld.domain, ln.name, do.name)
                        engine.set_check(ref, self._check)
                        engine.set_handler(ref, self._handler(do.ctl_model))

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
