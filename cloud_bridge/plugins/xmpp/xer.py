"""MMS PDUs in ASN.1 XER (and BER) for the IEC 61850-8-2 style XMPP mapping.

The PDUs are the subset of MMS (ISO 9506-2, as IEC 61850-8-1 profiles it)
written in mms.asn beside this module, compiled by asn1tools: XER for the
XMPP payload, BER for comparing sizes with an IEC 61850-8-1 MMS stack. A
value is asn1tools' Python form: a CHOICE is (alternative, value), a
SEQUENCE a dict, SEQUENCE OF a list, OCTET STRING bytes, BIT STRING
(bytes, number of bits).

On the wire the PDU is the element `MMSpdu` in the namespace NS, inside an
`AssociationContext` of the same namespace (IEC TR 61850-80-3 clause 7):

    <AssociationContext xmlns="http://www.iec.ch/61850/2015/SCSM_8_2" id="1">
      <MMSpdu><confirmed-RequestPDU>...</confirmed-RequestPDU></MMSpdu>
    </AssociationContext>

to_element()/from_element() convert between a value and that namespaced
`MMSpdu` ElementTree element (the form slixmpp stanzas hold);
encode()/decode() between a value and XER bytes without the namespace.
Anything that is not a valid MMSpdu raises XerError.
"""
import os
import xml.etree.ElementTree as ET

import asn1tools

NS = "http://www.iec.ch/61850/2015/SCSM_8_2"
PDU = "MMSpdu"
ASN_FILE = os.path.join(os.path.dirname(__file__), "mms.asn")

_specs = {}


class XerError(ValueError):
    """Not an MMSpdu of the supported subset (malformed, unknown or out of range)."""


def spec(codec="xer"):
    """The compiled MMS module for codec ("xer", "ber"), compiled once."""
    if codec not in _specs:
        compiled = asn1tools.compile_files(ASN_FILE, codec)
        if codec == "xer":
            _value_lists_for_recursive_choices(compiled.types[PDU]._type, set())
        _specs[codec] = compiled
    return _specs[codec]


def _value_lists_for_recursive_choices(t, seen):
    """asn1tools wraps each element of a SEQUENCE OF of a recursive type (MMS Data
    inside array / structure) in an element named after the type (<Data>), where
    X.680 / X.693 use the XMLValueList form for CHOICE components, as asn1tools
    does for non-recursive CHOICEs (listOfAccessResult): point the recursive
    placeholders at their inner type's value-list coding."""
    if id(t) in seen:
        return
    seen.add(id(t))
    inner = getattr(t, "_inner", None)
    if inner is not None:
        if hasattr(inner, "encode_of"):
            t.encode_of, t.decode_of = inner.encode_of, inner.decode_of
        _value_lists_for_recursive_choices(inner, seen)
    for child in getattr(t, "members", None) or ():
        _value_lists_for_recursive_choices(child, seen)
    if getattr(t, "element_type", None) is not None:
        _value_lists_for_recursive_choices(t.element_type, seen)


def encode(value, codec="xer"):
    """Bytes of the MMSpdu value (constraints checked)."""
    try:
        return spec(codec).encode(PDU, value, check_constraints=True)
    except (asn1tools.Error, ValueError, TypeError, KeyError, AttributeError) as e:
        raise XerError("cannot encode MMSpdu: %s" % e) from None


def decode(data, codec="xer"):
    """The MMSpdu value of bytes (constraints checked)."""
    try:
        return spec(codec).decode(PDU, data, check_constraints=True)
    except (asn1tools.Error, ValueError, TypeError, KeyError, AttributeError, IndexError,
            ET.ParseError) as e:
        raise XerError("not a valid MMSpdu: %s" % (str(e) or type(e).__name__)) from None


def to_element(value):
    """The MMSpdu value as an ElementTree element, every tag in namespace NS."""
    root = ET.fromstring(encode(value))
    for el in root.iter():
        el.tag = "{%s}%s" % (NS, el.tag)
    return root


MAX_DEPTH = 40   # deeper than any PDU of the subset with nested Data of depth ~30


def from_element(element):
    """The value of a namespaced MMSpdu element; XerError for elements of another
    namespace anywhere inside, attributes, nesting deeper than MAX_DEPTH, or anything
    the module does not allow."""
    if element.tag != "{%s}%s" % (NS, PDU):
        raise XerError("expected {%s}%s, got %s" % (NS, PDU, element.tag))
    return decode(ET.tostring(_strip(element, "{%s}" % NS, 0)))


def _strip(src, prefix, depth):
    """A copy of src with the namespace prefix taken off every tag."""
    if depth > MAX_DEPTH:
        raise XerError("MMSpdu nested deeper than %d elements" % MAX_DEPTH)
    if not isinstance(src.tag, str) or not src.tag.startswith(prefix):
        raise XerError("element %s is not in namespace %s" % (src.tag, NS))
    if src.attrib:
        raise XerError("unexpected attributes on %s" % src.tag[len(prefix):])
    dst = ET.Element(src.tag[len(prefix):])
    dst.text = src.text
    for child in src:
        dst.append(_strip(child, prefix, depth + 1))
    return dst
