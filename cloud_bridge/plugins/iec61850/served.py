"""The fleet as open61850's server sees it, light enough for 10 000 devices.

open61850's IedModel keeps a tree of typed nodes per logical device (about
500 nodes and 300 KB for a battery). Here every LD of one shape (the same
services, hence the same logical nodes: model.LD.shape) shares one such
tree, parsed once from that shape's SCL: it gives the MMS types, names,
trigger options, data sets and defaults. Each device keeps only

- its values: a list in the shape's leaf order of the plain values
  model.values computes (bool, int, float, str, Quality mask, Timestamp
  seconds), converted to MMS data when read; None until first pushed
  (a read then answers temporarily-unavailable, not a default);
- an overlay {item: data} of what the server's engines write into the model
  (report control block attributes, the last Oper of a control), created
  when they first do.

ServedFleet is an IedModel whose node() answers a View: a template node
seen through one device (its domain, values and overlay), with the Node
interface the server, ReportEngine and ControlEngine use (child, children,
data, assign, leaves, item, fc, mms_type, triggers). FleetReports is
open61850's ReportEngine that makes a report control block's state only
when a client first writes to it, and looks at a change's own domain only.
"""
import functools
import io
import threading
from datetime import datetime, timezone

from open61850.data import ArrayData, StructureData, TimestampData, VisibleStringData
from open61850.mms.pdu import ObjectName
from open61850.mms.reference import to_object_name
from open61850.mms.types import ArrayType
from open61850.server import IedModel
from open61850.server.model import (ACCESS_OBJECT_NON_EXISTENT, ACCESS_TEMPORARILY_UNAVAILABLE,
                                    to_data, _fits as fits_type)
from open61850.server.reporting import ReportControl, ReportEngine, _merge
from open61850.mms.report import ReasonCode

from ...iec61850 import model as X
from ...iec61850.scl import write_scl

_PLAIN = (bool, int, float, str, bytes)


def _quality_int(mask):
    """A model quality mask as the integer open61850 makes a 13-bit bit-string of."""
    return sum(1 << (X.Q_BITS - 1 - i) for i in range(X.Q_BITS) if mask >> i & 1)


def to_served(btype, value):
    """A model value as what open61850's to_data takes for a basic type."""
    if btype == "Quality":
        return _quality_int(value)
    if btype == "Timestamp":
        return TimestampData(datetime.fromtimestamp(max(0.0, value), timezone.utc))
    return value


class Shape:
    """What every LD of one shape shares: the template tree of one of them (parsed
    from its SCL), its names, data sets and the order of its values."""

    def __init__(self, ld, ied_name, host, port):
        part = X.Model(ied_name)
        part.lds = {ld.domain: ld}
        template = IedModel.from_scl(io.BytesIO(write_scl(part, host, port)))
        self.domain = ld.domain          # the template's own domain (in RptID / DatSet defaults)
        self.lns = template.logical_devices[ld.domain]
        self.names = template.names(ld.domain)
        self.datasets = {name.item: tuple(m.item for m in members)
                         for name, members in template.data_sets.items()}
        self.dataset_names = sorted(self.datasets)
        self.items, self.btypes, self.leaves = [], [], []
        for ln in ld.lns.values():
            for item, fc, da, _do in X.leaves(ln):
                node = self.node(item)
                if fc != "CO" and node is not None and not node.children:
                    self.items.append(item)
                    self.btypes.append(da.btype)
                    self.leaves.append(node)
        self.slot = {node: i for i, node in enumerate(self.leaves)}   # template leaf -> index

    def node(self, item):
        parts = item.split("$")
        node = self.lns.get(parts[0])
        for part in parts[1:]:
            if node is None:
                return None
            node = node.children.get(part)
        return node

    def default(self, node, domain):
        """A template leaf's value for an LD of this shape (its own domain in references)."""
        value = node.value
        if isinstance(value, VisibleStringData) and value.value.startswith(self.domain + "/"):
            return VisibleStringData(domain + value.value[len(self.domain):])
        return value


class Device:
    """One served LD: its shape, values (None until pushed) and the engines' overlay."""
    __slots__ = ("shape", "domain", "values", "overlay")

    def __init__(self, shape, domain):
        self.shape, self.domain = shape, domain
        self.values = None
        self.overlay = None

    def value(self, node):
        """The MMS data of a leaf of the template."""
        if self.overlay is not None and node in self.overlay:
            return self.overlay[node]
        i = self.shape.slot.get(node)
        if i is not None and self.values is not None:
            v = self.values[i]
            if type(v) not in _PLAIN:      # data set as it is (a write the device took)
                return v
            return to_data(node.mms_type, to_served(self.shape.btypes[i], v))
        return self.shape.default(node, self.domain)

    def put(self, node, data):
        i = self.shape.slot.get(node)
        if i is not None and self.values is not None:
            self.values[i] = data
        else:
            if self.overlay is None:
                self.overlay = {}      # keyed by template node (one per item of the shape)
            self.overlay[node] = data

    def data(self, node):
        """The MMS data of a template node (a structure member by member)."""
        if node.children:
            members = [self.data(c) for c in node.children.values()]
            return ArrayData(members) if isinstance(node.mms_type, ArrayType) \
                else StructureData(members)
        return self.value(node)


class View:
    """A template node seen through one device: open61850's Node interface."""
    __slots__ = ("device", "t", "parent")

    def __init__(self, device, template, parent=None):
        self.device, self.t, self.parent = device, template, parent

    name = property(lambda self: self.t.name)
    mms_type = property(lambda self: self.t.mms_type)
    fc = property(lambda self: self.t.fc)
    triggers = property(lambda self: self.t.triggers)
    enum_type = property(lambda self: self.t.enum_type)
    item = property(lambda self: self.t.item)
    domain = property(lambda self: self.device.domain)

    @property
    def children(self):
        return {name: View(self.device, c, self) for name, c in self.t.children.items()}

    def child(self, name):
        c = self.t.children.get(name)
        return None if c is None else View(self.device, c, self)

    def data(self):
        return self.device.data(self.t)

    def leaves(self):
        if not self.t.children:
            yield self
        for c in self.t.children.values():
            yield from View(self.device, c, self).leaves()

    def assign(self, value):
        """Set the value (a structure member by member); the leaves that changed."""
        if self.t.children:
            members = value.elements if isinstance(value, ArrayData) else value.members
            changed = []
            for c, member in zip(self.t.children.values(), members):
                changed += View(self.device, c, self).assign(member)
            return changed
        if self.device.value(self.t) == value:
            return []
        self.device.put(self.t, value)
        return [self]

    def __eq__(self, other):
        return isinstance(other, View) and other.device is self.device and other.t is self.t

    def __hash__(self):
        return hash((id(self.device), id(self.t)))

    def __repr__(self):
        return "View(%s/%s)" % (self.device.domain, self.t.item)


class _Domains:
    """The served domains as IedModel.logical_devices is used: membership, iteration,
    size; items() is empty (no engine walks every LD's nodes)."""

    def __init__(self, devices):
        self._devices = devices

    def __contains__(self, domain):
        return domain in self._devices

    def __iter__(self):
        return iter(self._devices)

    def __len__(self):
        return len(self._devices)

    def keys(self):
        return self._devices.keys()

    def items(self):
        return ()


class _DataSets:
    """IedModel.data_sets for the fleet: each LD's data sets are its shape's."""

    def __init__(self, devices):
        self._devices = devices

    def get(self, name, default=None):
        got = _members(self._devices, name.domain, name.item)
        return default if got is None else got

    def __contains__(self, name):
        return self.get(name) is not None

    def __getitem__(self, name):
        got = self.get(name)
        if got is None:
            raise KeyError(name)
        return got

    def __iter__(self):
        return iter(())


def _members(devices, domain, item):
    device = devices.get(domain or "")
    members = device.shape.datasets.get(item) if device is not None else None
    return None if members is None else _named(domain, members)


@functools.lru_cache(maxsize=512)
def _named(domain, members):
    return [ObjectName(m, domain) for m in members]


class ServedFleet(IedModel):
    """The IedModel open61850's server serves: every LD a Device of a shared Shape."""

    def __init__(self, ied_name, host, port):
        super().__init__(ied_name)
        self.host, self.port = host, port
        self.devices = {}        # domain -> Device
        self.shapes = {}         # LD shape -> Shape
        self.logical_devices = _Domains(self.devices)
        self.data_sets = _DataSets(self.devices)
        self._sorted = None
        self._grow = threading.Lock()

    def add(self, lds):
        """Serve these model LDs (their values come with push); parses the SCL of a
        shape not seen yet, once."""
        with self._grow:
            for ld in lds:
                shape = self.shapes.get(ld.shape)
                if shape is None:
                    shape = self.shapes[ld.shape] = Shape(ld, self.ied_name, self.host, self.port)
                with self.lock:
                    if ld.domain not in self.devices:
                        self.devices[ld.domain] = Device(shape, ld.domain)
                        self._sorted = None

    def domains(self):
        """The served domains, sorted (GetNameList of domains)."""
        got = self._sorted
        if got is None:
            got = self._sorted = sorted(self.devices)
        return got

    def loaded(self, domain):
        device = self.devices.get(domain)
        return device is not None and device.values is not None

    # --- IedModel ------------------------------------------------------------

    def node(self, name):
        obj = to_object_name(name)
        device = self.devices.get(obj.domain or "")
        if device is None:
            return None
        template = device.shape.node(obj.item)
        return None if template is None else View(device, template)

    def names(self, domain):
        device = self.devices.get(domain)
        return device.shape.names if device is not None else []

    def read(self, name):
        obj = to_object_name(name)
        device = self.devices.get(obj.domain or "")
        if device is None:
            return ACCESS_OBJECT_NON_EXISTENT
        template = device.shape.node(obj.item)
        if template is None:
            return ACCESS_OBJECT_NON_EXISTENT
        if device.values is None and template.fc not in ("BR", "RP", "CO", "CF"):
            return ACCESS_TEMPORARILY_UNAVAILABLE    # not loaded yet: no made-up value
        with self.lock:
            return device.data(template)

    # --- values ----------------------------------------------------------------

    def push(self, domain, values):
        """A device's values ({item: value} of model.values): those that changed are
        written and reported; a value that does not fit its type is left out."""
        device = self.devices.get(domain)
        if device is None:
            return []
        shape = device.shape
        new = []
        for i, item in enumerate(shape.items):
            v = values.get(item)
            node = shape.leaves[i]
            try:
                ok = v is not None and fits_type(node.mms_type,
                                                 to_data(node.mms_type, to_served(shape.btypes[i], v)))
            except (TypeError, ValueError, OverflowError):
                ok = False
            new.append(v if ok else None)
        with self.lock:
            old = device.values
            if old is None:
                device.values = [shape.default(n, domain) if v is None else v
                                 for v, n in zip(new, shape.leaves)]
                changed = [View(device, n) for n in shape.leaves]
            else:
                changed = []
                for i, v in enumerate(new):
                    if v is not None and old[i] != v:
                        old[i] = v
                        changed.append(View(device, shape.leaves[i]))
        if changed:
            self._notify(changed)
        return changed


class FleetReports(ReportEngine):
    """open61850's report engine over a ServedFleet: a block's state is made when
    a client first writes to it; a change is matched against the blocks of its
    own domain only (by member name, not by scanning every block)."""

    max_blocks = 1000   # blocks clients may configure, all LDs together (see _on_write)

    def __init__(self, server):
        self.by_domain = {}     # domain -> [ReportControl]
        super().__init__(server)

    def block(self, domain, item):
        """The ReportControl of LN$BR$name or LN$RP$name, made on first use; None if none."""
        key = (domain, item)
        rcb = self.controls.get(key)
        if rcb is None:
            node = self.model.node(ObjectName(item, domain))
            if node is None or node.fc not in ("BR", "RP") or item.count("$") != 2:
                return None
            rcb = self.controls[key] = ReportControl(self, domain, node)
            self.by_domain.setdefault(domain, []).append(rcb)
        return rcb

    def _on_write(self, connection, name, value):
        """A block gets its state (and, buffered, its buffer of up to 256 KB) on its
        first write; past max_blocks such blocks a write to a new one is refused
        temporarily-unavailable, so clients configuring the reports of every LD of a
        large fleet cannot grow the bridge without bound."""
        parts = name.item.split("$")
        if len(parts) >= 3 and parts[1] in ("BR", "RP"):
            key = (name.domain or "", "$".join(parts[:3]))
            with self._lock:
                if key not in self.controls and len(self.controls) >= self.max_blocks:
                    return ACCESS_TEMPORARILY_UNAVAILABLE
                self.block(*key)
        return super()._on_write(connection, name, value)

    def _domain_of(self, leaf):
        return leaf.domain

    def _on_change(self, changed):
        by_domain = {}
        for leaf in changed:
            if leaf.domain in self.by_domain:
                by_domain.setdefault(leaf.domain, []).append(leaf)
        if not by_domain:
            return
        with self._lock, self.model.lock:
            for domain, leaves in by_domain.items():
                for rcb in self.by_domain[domain]:
                    if not rcb.enabled and not (rcb.buffered and rcb.ever_enabled):
                        continue
                    trg = rcb.trg_ops()
                    index = {m.item: i for i, m in enumerate(rcb.members()) if m.domain == domain}
                    reasons = {}
                    for leaf in leaves:
                        parts = leaf.item.split("$")
                        at = next((index[p] for p in ("$".join(parts[:k])
                                                      for k in range(len(parts), 0, -1))
                                   if p in index), None)
                        if at is None:
                            continue
                        reason = ReasonCode(
                            data_change="dchg" in leaf.triggers and trg.data_change,
                            quality_change="qchg" in leaf.triggers and trg.quality_change,
                            data_update="dupd" in leaf.triggers and trg.data_update)
                        if reason != ReasonCode():
                            reasons[at] = _merge(reasons.get(at), reason)
                    if reasons:
                        self._add(rcb, reasons)
