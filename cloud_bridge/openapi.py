"""The OpenAPI 3.1 description of the bridge's HTTP API (served at /api/v1/openapi.json).

Written by hand next to the handlers in http_api.py: every operation, every
request body and response with its schema, and the error answers each can
give. Tests run schemathesis against it (tests/test_api_schemathesis.py).
"""
import copy

from .store import PRESENCE, COMMAND_STATUSES, PLAN_STATUSES, ROLES
from .http_views import OPS, MAX_EXPIRES_IN, MAX_TIMEOUT, MAX_TIME, MAX_HORIZON

VERSION = "1.0.0"


def _ref(name):
    return {"$ref": "#/components/schemas/" + name}


def _nullable(t):
    return {"type": [t, "null"]}


_NAME = {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000]*$"}
_TIME = {"type": "number", "description": "Unix seconds"}
_ANY = {"description": "any JSON value"}

_SERVICE_REF = {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": 64,
     "description": "profile name or decimal id"},
    {"type": "integer", "minimum": 0, "maximum": 254}],
    "description": "service by name (heat_pump) or id (16)", "example": "heat_pump"}
_OBJECT_REF = {"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": 64},
    {"type": "integer", "minimum": 0, "maximum": 2147483647}],
    "description": "object by name (flow_setpoint) or id (7)"}
_OBJECTS = {"type": "array", "items": _OBJECT_REF, "minItems": 1, "maxItems": 256}
_COMMON = {
    "service": _SERVICE_REF,
    "expires_in": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_EXPIRES_IN,
                   "description": "seconds the command may wait for its device (default: "
                                  "the bridge's command_expiry)"},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT,
                "description": "seconds to wait for the answer once sent"},
}


def _command(op, extra, required=(), description=""):
    props = dict(_COMMON, op={"type": "string", "enum": [op]}, **extra)
    return {"type": "object", "description": description, "properties": props,
            "required": ["service", "op"] + list(required), "additionalProperties": False}


SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"], "properties": {
            "error": {"type": "string", "description": "what is wrong"}}},
    "Health": {
        "type": "object",
        "required": ["status", "store", "instance", "time", "devices", "online", "auth"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "degraded"]},
            "store": {"type": "string"}, "instance": {"type": "string"}, "time": _TIME,
            "devices": {"type": "integer", "minimum": 0},
            "online": {"type": "integer", "minimum": 0},
            "auth": {"type": "boolean", "description": "bearer tokens are required"}}},
    "ProfileObject": {
        "type": "object",
        "required": ["id", "name", "type", "unit", "access", "writable", "mandatory", "min",
                     "max", "scale", "meaning", "labels"],
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "type": {"type": "string", "enum": ["none", "analog", "binary", "enum", "counter",
                                                "time", "schedule", "curve", "text", "alarm",
                                                "plan", "map"]},
            "unit": {"type": "string"}, "access": {"type": "string"},
            "writable": {"type": "boolean"}, "mandatory": {"type": "boolean"},
            "min": _nullable("number"), "max": _nullable("number"),
            "scale": _nullable("integer"), "meaning": _nullable("string"),
            "labels": {"type": ["object", "null"],
                       "additionalProperties": {"type": "string"}}}},
    "Profile": {
        "type": "object", "required": ["id", "name", "version", "objects"],
        "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "version": {"type": "string"},
            "objects": {"type": "array", "items": _ref("ProfileObject")}}},
    "ServiceVersion": {
        "type": "object", "required": ["id", "name", "version"],
        "properties": {"id": {"type": "integer"}, "name": _nullable("string"),
                       "version": {"type": "string", "example": "1.0"}}},
    "Device": {
        "type": "object",
        "required": ["id", "profile", "profiles", "consumes", "sleepy", "presence",
                     "presence_at", "first_seen", "last_seen", "groups"],
        "properties": {
            "id": {"type": "string"},
            "profile": dict(_nullable("string"), description="main device profile"),
            "profiles": {"type": "array", "items": _ref("ServiceVersion")},
            "consumes": {"type": "array", "items": {
                "type": "object", "required": ["id", "name"],
                "properties": {"id": {"type": "integer"}, "name": _nullable("string")}}},
            "sleepy": {"type": "boolean"},
            "presence": {"type": "string", "enum": list(PRESENCE)},
            "presence_at": _TIME, "first_seen": _TIME, "last_seen": _TIME,
            "groups": {"type": "array", "items": {"type": "string"}}}},
    "LatestValue": {
        "type": "object",
        "required": ["service", "service_id", "object", "object_id", "unit", "value", "wire", "t"],
        "properties": {
            "service": _nullable("string"), "service_id": {"type": "integer"},
            "object": _nullable("string"), "object_id": {"type": "integer"},
            "unit": _nullable("string"),
            "value": dict(_ANY, description="SI value (in unit)"),
            "wire": dict(_ANY, description="value as the device sent it"), "t": _TIME}},
    "History": {
        "type": "object",
        "required": ["device", "service", "service_id", "object", "object_id", "unit", "points"],
        "properties": {
            "device": {"type": "string"}, "service": {"type": "string"},
            "service_id": {"type": "integer"}, "object": {"type": "string"},
            "object_id": {"type": "integer"}, "unit": {"type": "string"},
            "points": {"type": "array", "items": {
                "type": "object", "required": ["t", "value"],
                "properties": {"t": _TIME, "value": dict(_ANY, description="SI value")}}}}},
    "Command": {
        "type": "object",
        "required": ["id", "device", "service", "service_id", "op", "summary", "body", "actor",
                     "status", "created_at", "expires_at", "timeout", "sent_at",
                     "completed_at", "result", "error"],
        "properties": {
            "id": {"type": "integer", "minimum": 1}, "device": {"type": "string"},
            "service": _nullable("string"), "service_id": {"type": "integer"},
            "op": {"type": "string", "enum": list(OPS)},
            "summary": {"type": "string", "description": "the command in words"},
            "body": dict(_ANY, description="the request body in wire form"),
            "actor": {"type": "string"},
            "status": {"type": "string", "enum": list(COMMAND_STATUSES)},
            "created_at": _TIME, "expires_at": _nullable("number"),
            "timeout": _nullable("number"), "sent_at": _nullable("number"),
            "completed_at": _nullable("number"),
            "result": dict(_ANY, description="RESULT body, or ERROR [code, detail]"),
            "error": dict(_nullable("string"), description="why it did not end done"),
            "subscription": dict(_nullable("integer"),
                                 description="a done subscribe's id (for unsubscribe)"),
            "values": dict(_nullable("object"), description=(
                "a done read's or subscribe's result by object name: "
                "{name: {value (SI), unit}}; result keeps the wire form"))}},
    "CommandRequest": {
        "oneOf": [_ref("ReadCommand"), _ref("WriteCommand"), _ref("InvokeCommand"),
                  _ref("SubscribeCommand"), _ref("UnsubscribeCommand")],
        "discriminator": {"propertyName": "op", "mapping": {
            "read": "#/components/schemas/ReadCommand",
            "write": "#/components/schemas/WriteCommand",
            "invoke": "#/components/schemas/InvokeCommand",
            "subscribe": "#/components/schemas/SubscribeCommand",
            "unsubscribe": "#/components/schemas/UnsubscribeCommand"}}},
    "ReadCommand": _command("read", {"objects": _OBJECTS},
                            description="READ objects (all readable ones if none given)"),
    "WriteCommand": _command("write", {"values": {
        "type": "object", "minProperties": 1, "maxProperties": 64,
        "additionalProperties": dict(_ANY, description="SI value"),
        "description": "{object name or id: SI value}", "example": {"flow_setpoint": 45}}},
        ["values"], "WRITE values (checked against the profile before queueing)"),
    "InvokeCommand": _command("invoke", {
        "object": _OBJECT_REF, "argument": dict(_ANY, description="SI argument")},
        ["object"], "INVOKE an action with its argument"),
    "SubscribeCommand": _command("subscribe", {
        "objects": _OBJECTS,
        "attributes": {"type": "object", "additionalProperties": False, "properties": {
            "pmin": {"type": "integer", "minimum": 0, "maximum": 604800},
            "pmax": {"type": "integer", "minimum": 0, "maximum": 604800},
            "step": {"type": "number"}, "gt": {"type": "number"}, "lt": {"type": "number"}},
            "description": "observe attributes (thresholds in SI units)"}},
        ["objects"], "SUBSCRIBE the bridge to objects"),
    "UnsubscribeCommand": _command("unsubscribe", {
        "subscription": {"type": "integer", "minimum": 0, "maximum": 65535}},
        description="UNSUBSCRIBE (one subscription or all of the service)"),
    "GroupCommandResult": {
        "type": "object", "required": ["group", "commands", "queued", "refused"],
        "properties": {
            "group": {"type": "string"},
            "commands": {"type": "array", "items": _ref("Command"),
                         "description": "the commands queued (devices the caller may command)"},
            "queued": {"type": "integer", "minimum": 0},
            "refused": {"type": "integer", "minimum": 0,
                        "description": "how many devices of the group the caller may not "
                                       "command (not which: it may not see them)"}}},
    "GroupsRequest": {
        "type": "object", "required": ["groups"], "additionalProperties": False,
        "properties": {"groups": {"type": "array", "maxItems": 64, "items": _NAME,
                                  "example": ["north"]}}},
    "Plan": {
        "type": "object",
        "required": ["id", "device", "start", "expiry", "primacy", "entries", "actor", "status",
                     "command_id", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "integer"}, "device": {"type": "string"},
            "start": _TIME, "expiry": _TIME, "primacy": {"type": "integer"},
            "entries": {"type": "object", "additionalProperties": {"type": "object"},
                        "description": "{service: {object: SI value or schedule}}"},
            "actor": {"type": "string"},
            "status": {"type": "string", "enum": list(PLAN_STATUSES)},
            "command_id": _nullable("integer"), "created_at": _TIME, "updated_at": _TIME}},
    "PlanRequest": {
        "type": "object", "required": ["entries"], "additionalProperties": False,
        "description": "a temporary plan; give expiry or duration",
        "properties": {
            "id": {"type": "integer", "minimum": 1, "maximum": 4294967295,
                   "description": "plan id (default: the device's next unused)"},
            "start": {"type": "integer", "minimum": 0, "maximum": MAX_TIME,
                      "description": "Unix seconds (default: now)"},
            "expiry": {"type": "integer", "minimum": 0, "maximum": MAX_TIME,
                       "description": "Unix seconds, after start and now, at most 48 h ahead"},
            "duration": {"type": "integer", "minimum": 1, "maximum": MAX_HORIZON,
                         "description": "seconds from start (instead of expiry)"},
            "primacy": {"type": "integer", "minimum": 0, "maximum": 255, "default": 100},
            "entries": {"type": "object", "minProperties": 1, "maxProperties": 16,
                        "additionalProperties": {
                            "type": "object", "minProperties": 1, "maxProperties": 64,
                            "additionalProperties": dict(
                                _ANY, description="SI value, or a schedule [start, step, "
                                                  "[SI values]] for non-series objects")},
                        "description": "{service name or id: {object name or id: value}}",
                        "example": {"heat_pump": {"sg_ready": 1}}},
            "expires_in": _COMMON["expires_in"]},
        "anyOf": [{"required": ["expiry"]}, {"required": ["duration"]}],
        "not": {"required": ["expiry", "duration"]}},
    "PlanPushed": {
        "type": "object", "required": ["plan", "command"],
        "properties": {"plan": _ref("Plan"), "command": _ref("Command")}},
    "Pairing": {
        "type": "object", "required": ["device", "controller", "role", "credential", "created_at"],
        "properties": {
            "device": {"type": "string"}, "controller": {"type": "string"},
            "role": {"type": "string", "enum": list(ROLES)},
            "credential": _nullable("string"), "created_at": _TIME,
            "oscore": {"type": "object", "description": "only in the answer to pairing a "
                       "controller with a commissioned device: the controller's OSCORE "
                       "credentials (aiocoap settings), given out once and not kept",
                       "properties": {"secret_hex": {"type": "string"},
                                      "salt_hex": {"type": "string"},
                                      "sender-id_hex": {"type": "string"},
                                      "recipient-id_hex": {"type": "string"}}},
            "command": {"type": "integer", "description": "the provisioning command"}}},
    "PairingRequest": {
        "type": "object", "required": ["controller", "role"], "additionalProperties": False,
        "properties": {
            "controller": dict(_NAME, example="aggregator-1"),
            "role": {"type": "string", "enum": list(ROLES)},
            "credential": {"anyOf": [_NAME, {"type": "null"}],
                           "description": "reference to the controller's key (kid, PSK "
                                          "identity), never the key itself"}}},
    "SignalRequest": {
        "type": "object", "required": ["values"], "additionalProperties": False,
        "properties": {
            "values": {"type": "object", "minProperties": 1, "maxProperties": 64,
                       "additionalProperties": dict(_ANY, description="SI value or schedule"),
                       "example": {"price_forecast": [1704067200, 900, [80.5, 91.0]]}},
            "t": {"type": "integer", "minimum": 0, "maximum": MAX_TIME,
                  "description": "time of the values (default: now)"}}},
    "SignalResult": {
        "type": "object", "required": ["service", "service_id", "t", "bytes", "consumers"],
        "properties": {
            "service": {"type": "string"}, "service_id": {"type": "integer"},
            "t": {"type": "integer"}, "bytes": {"type": "integer"},
            "consumers": {"type": "array", "items": {"type": "string"}}}},
    "AuditEntry": {
        "type": "object", "required": ["id", "at", "actor", "action", "target", "detail"],
        "properties": {
            "id": {"type": "integer"}, "at": _TIME, "actor": {"type": "string"},
            "action": {"type": "string"}, "target": _nullable("string"), "detail": _ANY}},
}
_W = {"type": "number", "description": "W"}
_WH = {"type": "number", "minimum": 0, "description": "Wh"}
SCHEMAS["FleetSummary"] = {
    "type": "object",
    "required": ["time", "max_age", "devices", "presence", "power", "flexibility", "series"],
    "properties": {
        "time": _TIME,
        "max_age": {"type": "number", "description": "seconds: older latest values do not count"},
        "devices": {"type": "integer", "minimum": 0},
        "presence": {"type": "object", "required": list(PRESENCE), "properties": {
            p: {"type": "integer", "minimum": 0} for p in PRESENCE}},
        "power": {"type": "array", "description": "active power now, by profile", "items": {
            "type": "object", "required": ["profile", "service_id", "w", "devices"],
            "properties": {"profile": {"type": ["string", "null"]}, "service_id": {"type": "integer"},
                           "w": _W, "devices": {"type": "integer", "minimum": 0}}}},
        "flexibility": {"type": "object", "required": [
            "deferrable_energy_wh", "battery_charge_headroom_wh",
            "battery_discharge_headroom_wh", "controllable_load_w"], "properties": {
                "deferrable_energy_wh": _WH, "battery_charge_headroom_wh": _WH,
                "battery_discharge_headroom_wh": _WH,
                "controllable_load_w": {"type": "number", "minimum": 0, "description": "W"}}},
        "series": {"description": "power by profile over time (operator only, else null)",
                   "oneOf": [{"type": "null"}, {
                       "type": "object", "required": ["step", "points"], "properties": {
                           "step": {"type": "number"},
                           "points": {"type": "array", "items": {
                               "type": "object",
                               "required": ["t", "profile", "service_id", "w", "devices"],
                               "properties": {"t": _TIME, "profile": {"type": ["string", "null"]},
                                              "service_id": {"type": "integer"}, "w": _W,
                                              "devices": {"type": "integer"}}}}}}]}}}
SCHEMAS["FleetPlans"] = {
    "type": "object", "required": ["time", "from", "to", "plans"],
    "properties": {
        "time": _TIME, "from": _TIME, "to": _TIME,
        "plans": {"type": "array", "items": {
            "type": "object",
            "required": ["actor", "plan_id", "start", "expiry", "devices", "accepted", "primacy",
                         "entries"],
            "properties": {
                "actor": {"type": "string", "description": "who pushed it (a plugin: OpenADR)"},
                "plan_id": {"type": "integer"}, "start": _TIME, "expiry": _TIME,
                "devices": {"type": "integer", "minimum": 1},
                "accepted": {"type": "integer", "minimum": 0},
                "primacy": {"type": "integer"},
                "entries": {"type": "object", "description": "one device's entries, by name"}}}}}}

SCHEMAS["DeviceDetail"] = copy.deepcopy(SCHEMAS["Device"])
SCHEMAS["DeviceDetail"]["required"] += ["values", "role"]
SCHEMAS["DeviceDetail"]["properties"].update({
    "values": {"type": "array", "items": _ref("LatestValue"),
               "description": "latest value of every object heard from"},
    "role": dict(_nullable("string"), description="the caller's role on the device")})


# ------------------------------------------------------------------ operations

_ERRORS = {
    400: "bad request: the message says what is wrong",
    401: "missing or unknown bearer token (only when tokens are configured)",
    403: "the caller's role does not allow this, or the Host or Origin header names "
         "another site (DNS rebinding, cross-site requests)",
    404: "unknown device, command, plan, pairing or group",
    405: "method not allowed",
    408: "the request body took too long to arrive",
    413: "request body too large",
    415: "the body is not sent as Content-Type: application/json",
    429: "the caller (not an owner) has too many commands queued for the device",
    409: "the change would leave the device without an owner",
    503: "store unavailable",
}


def _json(schema):
    return {"application/json": {"schema": schema}}


def _op(summary, ok_status, ok_schema, errors, params=(), body=None, tag="devices",
        secure=True, ok_description="success", ok_content=None, example=None):
    responses = {}
    if ok_content is not None:
        responses[str(ok_status)] = {"description": ok_description, "content": ok_content}
    elif ok_schema is None:
        responses[str(ok_status)] = {"description": ok_description}
    else:
        responses[str(ok_status)] = {"description": ok_description, "content": _json(ok_schema)}
    codes = set(errors) | {403, 405, 503}   # 403: foreign Host or Origin (http_guard)
    if secure:
        codes.add(401)
    if body is not None:
        codes |= {400, 408, 413, 415}
    for code in sorted(codes):
        responses[str(code)] = {"description": _ERRORS[code], "content": _json(_ref("Error"))}
    op = {"summary": summary, "tags": [tag], "responses": responses,
          "parameters": list(params)}
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
        if example is not None:
            op["requestBody"]["content"]["application/json"]["example"] = example
    if not secure:
        op["security"] = []
    return op


def _path(name, schema, description, example=None):
    p = {"name": name, "in": "path", "required": True, "description": description,
         "schema": schema}
    if example is not None:
        p["example"] = example
    return p


def _query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


DEVICE = _path("id", _NAME, "device id", "hp-0001")
WRITE_EXAMPLE = {"service": "heat_pump", "op": "write", "values": {"flow_setpoint": 45}}
LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
               "most entries returned, newest first")


def _paths():
    a = "/api/v1"
    dev = a + "/devices/{id}"
    health = _op("Liveness, store state and the bridge's clock", 200, _ref("Health"), [],
                 tag="bridge", secure=False)
    health["responses"]["503"] = {"description": "the store is unavailable (status degraded)",
                                  "content": _json(_ref("Health"))}
    return {
        a + "/health": {"get": health},
        a + "/openapi.json": {"get": _op("This document", 200, {"type": "object"}, [],
                                         tag="bridge", secure=False)},
        a + "/profiles": {"get": _op(
            "Every profile the bridge knows: objects, units, ranges, meanings", 200,
            {"type": "array", "items": _ref("Profile")}, [], tag="bridge")},
        a + "/devices": {"get": _op(
            "Devices the caller is paired with", 200, {"type": "array", "items": _ref("Device")},
            [400], [_query("presence", {"type": "string", "enum": list(PRESENCE)},
                           "only devices with this presence"),
                    _query("group", _NAME, "only devices in this group"),
                    _query("profile", {"type": "string", "minLength": 1, "maxLength": 64},
                           "only devices serving this profile (name or id)"),
                    _query("alarm", {"type": "string", "enum": ["true", "false"]},
                           "only devices with (true) or without (false) an active alarm"),
                    _query("after", _NAME, "the last id of the previous page (ids ascend)"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000,
                                     "default": 1000},
                           "most devices returned; a Link header rel=next names the next "
                           "page")])},
        a + "/fleet/summary": {"get": _op(
            "Fleet aggregates (SQL in the store): counts by presence, active power by "
            "profile now and over time, flexibility available now", 200,
            _ref("FleetSummary"), [400], [
                _query("since", {"type": "number", "minimum": 0, "maximum": MAX_TIME},
                       "start of the power series, Unix seconds (default 6 h ago)")],
            tag="fleet")},
        a + "/fleet/plans": {"get": _op(
            "Plans queued or in force across the fleet, one entry per source and plan id",
            200, _ref("FleetPlans"), [400], [
                _query("from", {"type": "number", "minimum": 0, "maximum": MAX_TIME},
                       "Unix seconds (default an hour ago)"),
                _query("to", {"type": "number", "minimum": 0, "maximum": MAX_TIME},
                       "Unix seconds (default a day ahead)"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "default": 200}, "most plans returned")],
            tag="fleet")},
        dev: {"get": _op("A device with the latest value of every object", 200,
                         _ref("DeviceDetail"), [400, 403, 404], [DEVICE]),
              "delete": _op("Forget a device and all kept about it; its id may register "
                            "again (operator, owner; audited)", 204, None, [400, 403, 404],
                            [_path("id", _NAME, "device id", "retired-0001")],
                            ok_description="deleted")},
        dev + "/history": {"get": _op(
            "Telemetry history of one object in SI units (without from: the newest points)",
            200, _ref("History"), [400, 403, 404], [
                DEVICE,
                dict(_query("service", {"type": "string", "minLength": 1, "maxLength": 64},
                            "service name or id"), required=True, example="heat_pump"),
                dict(_query("object", {"type": "string", "minLength": 1, "maxLength": 64},
                            "object name or id"), required=True, example="flow_temp"),
                _query("from", {"type": "number", "minimum": 0, "maximum": MAX_TIME},
                       "Unix seconds, inclusive"),
                _query("to", {"type": "number", "minimum": 0, "maximum": MAX_TIME},
                       "Unix seconds, exclusive"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000,
                                 "default": 1000}, "most points returned")])},
        dev + "/groups": {"put": _op("Replace the device's groups (owner, installer)", 200,
                                     _ref("Device"), [400, 403, 404], [DEVICE],
                                     _ref("GroupsRequest"), example={"groups": ["north"]})},
        dev + "/commands": {
            "get": _op("The device's commands, newest first", 200,
                       {"type": "array", "items": _ref("Command")}, [400, 403, 404], [
                           DEVICE, LIMIT,
                           _query("status", {"type": "string", "enum": list(COMMAND_STATUSES)},
                                  "only commands with this status")]),
            "post": _op("Queue a command (checked against the profile and the caller's role)",
                        202, _ref("Command"), [400, 403, 404, 429], [DEVICE],
                        _ref("CommandRequest"), ok_description="queued",
                        example=WRITE_EXAMPLE)},
        a + "/commands/{cid}": {"get": _op(
            "One command and its status", 200, _ref("Command"), [400, 404],
            [_path("cid", {"type": "integer", "minimum": 1, "maximum": 999999999999999999},
                   "command id", 1)], tag="commands")},
        a + "/groups/{group}/commands": {"post": _op(
            "Queue a command for every device of a group (refused devices are counted)", 202,
            _ref("GroupCommandResult"), [400, 404], [_path("group", _NAME, "group", "north")],
            _ref("CommandRequest"), tag="commands", ok_description="queued",
            example=WRITE_EXAMPLE)},
        dev + "/plans": {
            "get": _op("The device's plans (live ones; ?all=true: every one)", 200,
                       {"type": "array", "items": _ref("Plan")}, [400, 403, 404], [
                           DEVICE, _query("all", {"type": "string", "enum": ["true", "false"]},
                                          "include expired, failed and cancelled plans")],
                       tag="plans"),
            "post": _op("Push a temporary plan (SI values converted and checked)", 202,
                        _ref("PlanPushed"), [400, 403, 404, 429], [DEVICE], _ref("PlanRequest"),
                        tag="plans", ok_description="queued", example={
                            "id": 1, "duration": 3600, "primacy": 10,
                            "entries": {"heat_pump": {"sg_ready": 3, "flow_setpoint": 45}}})},
        dev + "/subscriptions": {"get": _op(
            "Subscriptions the bridge holds on the device and who owns each (all for its "
            "managers, else the caller's own)", 200, {"type": "array", "items": {
                "type": "object", "required": ["service", "service_id", "subscription", "actor"],
                "properties": {"service": _nullable("string"), "service_id": {"type": "integer"},
                               "subscription": {"type": "integer"},
                               "actor": {"type": "string"}}}}, [400, 403, 404], [DEVICE],
            tag="commands")},
        dev + "/plans/{plan_id}": {"delete": _op(
            "Cancel a plan", 202, _ref("Command"), [400, 403, 404], [
                DEVICE, _path("plan_id", {"type": "integer", "minimum": 1,
                                          "maximum": 4294967295}, "plan id", 1)],
            tag="plans", ok_description="cancel queued")},
        dev + "/pairings": {
            "get": _op("Controllers paired with the device (owner, installer)", 200,
                       {"type": "array", "items": _ref("Pairing")}, [400, 403, 404], [DEVICE],
                       tag="pairing"),
            "post": _op("Pair a controller in a role (owner, installer; no role above the "
                        "caller's own, the last owner stays owner)", 201, _ref("Pairing"),
                        [400, 403, 404, 409], [DEVICE], _ref("PairingRequest"), tag="pairing",
                        ok_description="paired",
                        example={"controller": "aggregator-1", "role": "aggregator"}),
            "delete": _op(
                "Unpair the controller named by ?controller= (owner, installer; not one "
                "above the caller, not the last owner)", 204, None,
                [400, 403, 404, 409], [DEVICE, dict(_query("controller", _NAME, "controller"),
                                               required=True, example="aggregator-1")],
                tag="pairing", ok_description="unpaired")},
        dev + "/pairings/{controller}": {"delete": _op(
            "Unpair a controller (owner, installer; not one above the caller, not the "
            "last owner)", 204, None, [400, 403, 404, 409],
            [DEVICE, _path("controller", _NAME, "controller", "monitor-1")], tag="pairing",
            ok_description="unpaired")},
        a + "/signals/{service}": {"post": _op(
            "Broadcast an informational signal (price, weather, grid) to its consumers "
            "(operator, plugins)", 202, _ref("SignalResult"), [400, 403],
            [_path("service", {"type": "string", "minLength": 1, "maxLength": 64},
                   "informational service name or id", "price")],
            _ref("SignalRequest"), tag="signals", ok_description="sent",
            example={"values": {"price_now": 95.5, "currency": "EUR"}})},
        a + "/events": {"get": _op(
            "Server-Sent Events: device, presence, telemetry and command events", 200, None,
            [400], [
                _query("device", _NAME, "only this device's events"),
                _query("types", {"type": "string", "pattern": "^[a-z,]+$"},
                       "comma-separated event types: device,presence,telemetry,command"),
                _query("access_token", {"type": "string"},
                       "bearer token, for clients that cannot send headers")],
            tag="bridge", ok_description="an endless text/event-stream",
            ok_content={"text/event-stream": {"schema": {"type": "string"}}})},
        a + "/audit": {"get": _op(
            "The audit log, newest first (operator only)", 200,
            {"type": "array", "items": _ref("AuditEntry")}, [400, 403],
            [LIMIT, _query("target", _NAME, "only entries about this device")], tag="bridge")},
        "/metrics": {"get": _op(
            "Prometheus metrics (text exposition format)", 200, None, [], tag="bridge",
            secure=False, ok_content={"text/plain": {"schema": {"type": "string"}}})},
    }


def document(tokens=True):
    """The OpenAPI document as a fresh dict.

    tokens: the bridge has bearer tokens configured; without, every caller is
    the operator and the document says the token is optional.
    """
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SPOT bridge API", "version": VERSION,
            "description": "Devices, telemetry, commands, plans, pairings and signals of a "
                           "SPOT cloud bridge. Values are in SI units (docs/profiles.md). "
                           "Errors are {\"error\": \"...\"}. Without configured tokens every "
                           "caller is the operator: the bridge binds 127.0.0.1 by default."},
        "tags": [{"name": n} for n in ("bridge", "devices", "commands", "plans", "pairing",
                                       "signals", "fleet")],
        "security": [{"bearer": []}] if tokens else [{"bearer": []}, {}],
        "paths": _paths(),
        "components": {
            "schemas": copy.deepcopy(SCHEMAS),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
