"""The fleet model as SCL (IEC 61850-6): an ICD / CID file of the bridge's
gateway IED, written from the same model.py the servers serve, so what a
utility imports into its tools is what a client browses.

    write_scl(model, host="127.0.0.1", port=10102) -> bytes (UTF-8 XML)

Types are shared: one LNodeType per distinct LN layout, one DOType per
distinct data object, one DAType per structured attribute, ids made from
the class name and a hash of the layout (stable across runs). Control
models are instance values (DOI/DAI ctlModel) in each LN.
"""
import hashlib
import xml.etree.ElementTree as ET

from . import cdc as C
from . import model as X
from .mapping import LOCAL_NS

NS = "http://www.iec.ch/61850/2003/SCL"
AP_NAME = "AP1"


def _sig(obj):
    """A hashable layout of a DA / DO / LN, without SPOT points."""
    if isinstance(obj, X.DA):
        return ("DA", obj.name, obj.btype, obj.fc, obj.trg, tuple(_sig(c) for c in obj.children))
    if isinstance(obj, X.DO):
        return ("DO", obj.name, obj.cdc_name, obj.local, tuple(_sig(c) for c in obj.children))
    return ("LN", obj.lnclass, tuple(_sig(d) for d in obj.dos.values()))


def _id(prefix, sig):
    return "%s_%s" % (prefix, hashlib.sha1(repr(sig).encode()).hexdigest()[:8])


class _Templates:
    def __init__(self):
        self.lnodes, self.dos, self.das = {}, {}, {}   # id -> element (insertion order)

    def ln_type(self, ln):
        tid = _id(ln.lnclass, _sig(ln))
        if tid not in self.lnodes:
            el = ET.Element("LNodeType", id=tid, lnClass=ln.lnclass)
            if ln.local:
                el.set("desc", "SPOT local extension (%s)" % LOCAL_NS)
            for do in ln.dos.values():
                d = ET.SubElement(el, "DO", name=do.name, type=self.do_type(do))
                if do.local:
                    d.set("desc", "SPOT local extension (%s)" % LOCAL_NS)
            self.lnodes[tid] = el
        return tid

    def do_type(self, do):
        tid = _id(do.cdc_name, _sig(do))
        if tid not in self.dos:
            el = ET.Element("DOType", id=tid, cdc=do.cdc_name)
            for c in do.children:
                if isinstance(c, X.DO):
                    ET.SubElement(el, "SDO", name=c.name, type=self.do_type(c))
                else:
                    el.append(self._attr("DA", c))
            self.dos[tid] = el
        return tid

    def _attr(self, tag, da):
        el = ET.Element(tag, name=da.name)
        if tag == "DA":
            el.set("fc", da.fc)
            for flag, key in (("d", "dchg"), ("q", "qchg"), ("u", "dupd")):
                if flag in da.trg:
                    el.set(key, "true")
        if da.btype is None:
            el.set("bType", "Struct")
            el.set("type", self.da_type(da))
        elif da.btype.startswith("Enum:"):
            el.set("bType", "Enum")
            el.set("type", da.btype[5:])
        else:
            el.set("bType", da.btype)
        return el

    def da_type(self, da):
        tid = _id(da.name, _sig(da)[2:] + (tuple(_sig(c) for c in da.children),))
        if tid not in self.das:
            el = ET.Element("DAType", id=tid)
            for c in da.children:
                el.append(self._attr("BDA", c))
            self.das[tid] = el
        return tid

    def element(self):
        root = ET.Element("DataTypeTemplates")
        root.extend(self.lnodes.values())
        root.extend(self.dos.values())
        root.extend(self.das.values())
        for eid, values in C.ENUMS.items():
            e = ET.SubElement(root, "EnumType", id=eid)
            for ord_, name in values:
                ET.SubElement(e, "EnumVal", ord=str(ord_)).text = name
        return root


def _val(parent, name, text):
    dai = ET.SubElement(parent, "DAI", name=name)
    ET.SubElement(dai, "Val").text = text


def _ln_element(tag, ln, ld, templates):
    el = ET.Element(tag, lnClass=ln.lnclass, inst=ln.inst, lnType=templates.ln_type(ln))
    if tag == "LN":
        el.set("prefix", "")
    el.set("desc", ln.desc)
    if tag == "LN0":
        for name, members in ld.datasets.items():
            ds = ET.SubElement(el, "DataSet", name=name)
            for ln_name, fc, do_name in members:
                m = ld.lns[ln_name]
                fcda = ET.SubElement(ds, "FCDA", ldInst=ld.inst, prefix="", lnClass=m.lnclass,
                                     doName=do_name, fc=fc)
                if m.inst:
                    fcda.set("lnInst", m.inst)
        for r in ld.rcbs:
            rc = ET.SubElement(el, "ReportControl", name=r.name, datSet=r.dataset, rptID=r.rpt_id,
                               confRev="1", buffered="true" if r.buffered else "false",
                               bufTime="100", intgPd="10000", indexed="true")
            ET.SubElement(rc, "TrgOps", dchg="true", qchg="true", dupd="false", period="true",
                          gi="true")
            ET.SubElement(rc, "OptFields", seqNum="true", timeStamp="true", dataSet="true",
                          reasonCode="true", dataRef="true", entryID="true", configRef="true")
            ET.SubElement(rc, "RptEnabled", max=str(r.max))
        nam = ET.SubElement(el, "DOI", name="NamPlt")
        _val(nam, "vendor", "SPOT")
        _val(nam, "d", "SPOT device %s" % ld.device)
        _val(nam, "ldNs", "IEC 61850-7-4:2007B")
    for do in ln.dos.values():
        if do.ctl_model is not None:
            doi = ET.SubElement(el, "DOI", name=do.name, desc=do.desc)
            _val(doi, "ctlModel", C.CTL_MODEL_NAMES[do.ctl_model])
            _val(doi, "sboTimeout", str(X.SBO_TIMEOUT_MS))
    return el


def scl_element(model, host="127.0.0.1", port=10102):
    ET.register_namespace("", NS)
    root = ET.Element("SCL", xmlns=NS, version="2007", revision="B", release="4")
    ET.SubElement(root, "Header", id="spot-bridge-" + model.ied_name, nameStructure="IEDName",
                  toolID="spot iec61850 scl")
    comm = ET.SubElement(root, "Communication")
    sub = ET.SubElement(comm, "SubNetwork", name="bridge", type="8-MMS")
    cap = ET.SubElement(sub, "ConnectedAP", iedName=model.ied_name, apName=AP_NAME)
    addr = ET.SubElement(cap, "Address")
    ET.SubElement(addr, "P", type="IP").text = host
    ET.SubElement(addr, "P", type="OSI-TSEL").text = "0001"
    ET.SubElement(addr, "P", type="OSI-SSEL").text = "0001"
    ET.SubElement(addr, "P", type="OSI-PSEL").text = "00000001"
    ET.SubElement(addr, "P", type="TCP-Port").text = str(port)
    ied = ET.SubElement(root, "IED", name=model.ied_name, manufacturer="SPOT", type="gateway",
                        configVersion="1", desc="SPOT cloud bridge: one LD per device")
    services = ET.SubElement(ied, "Services")
    for tag in ("DynAssociation", "GetDirectory", "GetDataObjectDefinition", "DataObjectDirectory",
                "GetDataSetValue", "ReadWrite", "GetCBValues"):
        ET.SubElement(services, tag)
    ET.SubElement(services, "ConfReportControl", max="2")
    ET.SubElement(services, "ReportSettings", cbName="Fix", datSet="Fix", rptID="Fix",
                  optFields="Dyn", bufTime="Dyn", trgOps="Dyn", intgPd="Dyn", resvTms="true")
    ap = ET.SubElement(ied, "AccessPoint", name=AP_NAME)
    server = ET.SubElement(ap, "Server")
    ET.SubElement(server, "Authentication", none="true")
    templates = _Templates()
    for ld in model.lds.values():
        lde = ET.SubElement(server, "LDevice", inst=ld.inst, desc="SPOT device %s" % ld.device)
        for ln in ld.lns.values():
            lde.append(_ln_element("LN0" if ln.lnclass == "LLN0" else "LN", ln, ld, templates))
    root.append(templates.element())
    return root


def write_scl(model, host="127.0.0.1", port=10102):
    """The SCL (ICD with the bridge's address) of a Model, as UTF-8 bytes."""
    root = scl_element(model, host, port)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
