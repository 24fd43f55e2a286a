"""The XER codec of MMS PDUs (cloud_bridge/plugins/xmpp/xer.py): round trips, the
XML form IEC TR 61850-80-3 sketches, the BER form of ISO 9506-2, and refusals."""
import xml.etree.ElementTree as ET

import pytest

from spot.cloud_bridge.plugins.xmpp import xer

NS = "{http://www.iec.ch/61850/2015/SCSM_8_2}"


def name(domain, item):
    return ("domain-specific", {"domainId": domain, "itemId": item})


def read_request(invoke_id, *names):
    return ("confirmed-RequestPDU", {"invokeID": invoke_id, "confirmedServiceRequest": (
        "read", {"specificationWithResult": False, "variableAccessSpecificatn": (
            "listOfVariable", [{"variableSpecification": ("name", n)} for n in names])})})


def read_response(invoke_id, *results):
    return ("confirmed-ResponsePDU", {"invokeID": invoke_id, "confirmedServiceResponse": (
        "read", {"listOfAccessResult": list(results)})})


def test_read_request_round_trips_through_xer():
    pdu = read_request(13, name("IEDNameLDInst", "LLN0$ST$Beh$stVal"))
    assert xer.decode(xer.encode(pdu)) == pdu


def test_read_request_has_the_element_structure_of_the_tr_example():
    root = ET.fromstring(xer.encode(read_request(13, name("IEDNameLDInst", "LLN0$ST$Beh$stVal"))))
    spec = root.find("confirmed-RequestPDU/confirmedServiceRequest/read/variableAccessSpecificatn/"
                     "listOfVariable/SEQUENCE/variableSpecification/name/domain-specific")
    assert root.tag == "MMSpdu"
    assert root.find("confirmed-RequestPDU/invokeID").text == "13"
    assert (spec.find("domainId").text, spec.find("itemId").text) == \
        ("IEDNameLDInst", "LLN0$ST$Beh$stVal")


def test_read_response_with_success_and_failure_round_trips():
    pdu = read_response(7, ("success", ("integer", 1)), ("failure", 10))
    assert xer.decode(xer.encode(pdu)) == pdu


def test_structure_of_data_is_a_value_list_without_wrapping_elements():
    pdu = read_response(1, ("success", ("structure", [("boolean", True), ("integer", -3)])))
    root = ET.fromstring(xer.encode(pdu))
    structure = root.find(".//listOfAccessResult/success/structure")
    assert [c.tag for c in structure] == ["boolean", "integer"]
    assert xer.decode(xer.encode(pdu)) == pdu


def test_nested_structures_and_arrays_round_trip():
    value = ("structure", [("floating-point", b"\x08\x41\xc8\x00\x00"),
                           ("bit-string", (b"\x00\x00", 13)), ("utc-time", bytes(8)),
                           ("array", [("structure", [("unsigned", 4), ("visible-string", "x")])]),
                           ("mMSString", "Wärmepumpe")])
    pdu = read_response(2, ("success", value))
    assert xer.decode(xer.encode(pdu)) == pdu


def test_information_report_round_trips():
    pdu = ("unconfirmed-PDU", {"unconfirmedService": ("informationReport", {
        "variableAccessSpecification": ("variableListName", ("vmd-specific", "RPT")),
        "listOfAccessResult": [("success", ("visible-string", "hp-0001HP/LLN0$BR$brcb01"))]})})
    assert xer.decode(xer.encode(pdu)) == pdu


def test_get_name_list_request_and_response_round_trip():
    req = ("confirmed-RequestPDU", {"invokeID": 3, "confirmedServiceRequest": ("getNameList", {
        "objectClass": ("basicObjectClass", 9), "objectScope": ("vmdSpecific", None)})})
    resp = ("confirmed-ResponsePDU", {"invokeID": 3, "confirmedServiceResponse": ("getNameList", {
        "listOfIdentifier": ["hp-0001HP", "pv-0001PV"], "moreFollows": False})})
    assert xer.decode(xer.encode(req)) == req
    assert xer.decode(xer.encode(resp)) == resp


def test_confirmed_error_pdu_round_trips():
    pdu = ("confirmed-ErrorPDU", {"invokeID": 9, "serviceError": {
        "errorClass": ("access", 2), "additionalDescription": "no such object"}})
    assert xer.decode(xer.encode(pdu)) == pdu


def test_write_request_and_response_round_trip():
    req = ("confirmed-RequestPDU", {"invokeID": 4, "confirmedServiceRequest": ("write", {
        "variableAccessSpecificatn": ("listOfVariable", [
            {"variableSpecification": ("name", name("hp-0001HP", "HPMP1$SP$SGReady$setVal"))}]),
        "listOfData": [("integer", 2)]})})
    resp = ("confirmed-ResponsePDU", {"invokeID": 4, "confirmedServiceResponse": (
        "write", [("success", None), ("failure", 3)])})
    assert xer.decode(xer.encode(req)) == req
    assert xer.decode(xer.encode(resp)) == resp


def test_element_form_is_namespaced_and_round_trips():
    pdu = read_request(5, name("LD", "LLN0$ST$Beh$stVal"))
    el = xer.to_element(pdu)
    assert all(e.tag.startswith(NS) for e in el.iter())
    assert xer.from_element(el) == pdu


def test_ber_form_carries_the_iso_9506_tags():
    ber = xer.encode(read_request(13, name("IEDNameLDInst", "LLN0$ST$Beh$stVal")), "ber")
    # [0] confirmed-RequestPDU, INTEGER 13, [4] read, [1] variableAccessSpecificatn
    assert ber[0] == 0xA0 and ber[2:5] == b"\x02\x01\x0d" and ber[5] == 0xA4
    assert xer.decode(ber, "ber") == read_request(13, name("IEDNameLDInst", "LLN0$ST$Beh$stVal"))


def test_unknown_pdu_alternative_is_refused():
    with pytest.raises(xer.XerError):
        xer.decode(b"<MMSpdu><initiate-RequestPDU/></MMSpdu>")


def test_invoke_id_that_is_not_a_number_is_refused():
    with pytest.raises(xer.XerError):
        xer.decode(b"<MMSpdu><confirmed-RequestPDU><invokeID>x</invokeID></confirmed-RequestPDU>"
                   b"</MMSpdu>")


def test_negative_invoke_id_is_refused_by_the_constraint():
    text = xer.encode(read_request(0, name("LD", "X"))).replace(b"<invokeID>0<", b"<invokeID>-1<")
    with pytest.raises(xer.XerError):
        xer.decode(text)


def test_malformed_xml_is_refused():
    with pytest.raises(xer.XerError):
        xer.decode(b"<MMSpdu><confirmed-RequestPDU>")


def test_element_of_another_namespace_inside_is_refused():
    el = xer.to_element(read_request(1, name("LD", "X")))
    el[0].append(ET.Element("{urn:other}invokeID"))
    with pytest.raises(xer.XerError):
        xer.from_element(el)


def test_element_nested_beyond_the_limit_is_refused():
    el = ET.Element(NS + "MMSpdu")
    inner = el
    for _ in range(xer.MAX_DEPTH + 5):
        inner = ET.SubElement(inner, NS + "structure")
    with pytest.raises(xer.XerError):
        xer.from_element(el)


def test_identifier_longer_than_129_characters_is_refused_on_encode():
    with pytest.raises(xer.XerError):
        xer.encode(read_request(1, name("LD", "X" * 130)))


SCHEMA = None


def schema():
    """tests/xmpp/mms_subset.xsd: the XER form written by hand, independent of asn1tools."""
    global SCHEMA
    if SCHEMA is None:
        import os
        from lxml import etree
        SCHEMA = etree.XMLSchema(etree.parse(os.path.join(os.path.dirname(__file__), "xmpp",
                                                          "mms_subset.xsd")))
    return SCHEMA


@pytest.mark.parametrize("pdu", [
    read_request(13, name("IEDNameLDInst", "LLN0$ST$Beh$stVal")),
    read_response(2, ("success", ("structure", [("floating-point", b"\x08\x41\xc8\x00\x00"),
                                                ("bit-string", (b"\x00\x00", 13)),
                                                ("utc-time", bytes(8)), ("boolean", False)])),
                  ("failure", 3)),
    ("confirmed-ResponsePDU", {"invokeID": 3, "confirmedServiceResponse": ("getNameList", {
        "listOfIdentifier": ["hp-0001HP"], "moreFollows": False})}),
    ("confirmed-ErrorPDU", {"invokeID": 9, "serviceError": {"errorClass": ("access", 2)}}),
    ("confirmed-ResponsePDU", {"invokeID": 4, "confirmedServiceResponse": (
        "write", [("success", None), ("failure", 3)])}),
], ids=["read-request", "read-response", "getnamelist-response", "error", "write-response"])
def test_xer_the_codec_writes_validates_against_the_independent_schema(pdu):
    from lxml import etree
    el = etree.fromstring(ET.tostring(xer.to_element(pdu)))
    assert schema().validate(el), schema().error_log.last_error
