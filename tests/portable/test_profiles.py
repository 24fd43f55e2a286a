"""Profile tables: every profile loads, its rows are well formed, and a Node
serving it reads, writes and refuses each object as its row says.

Portable: runs under CPython (pytest) and MicroPython. Test values come from
the tables themselves (mid-range, just out of range, wrong type).
"""
from spot.core import model, frame as F, errors as E
from spot.core import services as S
from spot.core.node import Node, EV_WRITE, EV_INVOKE
from spot.profiles import registry
from spot.profiles.common import ELECTRICAL

T0 = 1700000000  # a fixed unix time for TIME, SCHEDULE and ALARM values
_mid = [0]


def _profiles():
    return [registry.load(n) for n in registry.names()]


def _num_row(row):
    # the row of one number of row (a schedule slot, a curve coordinate)
    return (row[0], row[1], model.ANALOG, row[3], row[4], row[5], row[6], row[7], row[8])


def _num(row, si):
    return model.to_wire(_num_row(row), si)


def _mid_number(row):
    lo = row[model.LO]
    hi = row[model.HI]
    if lo is None:
        lo = 0
    if hi is None:
        hi = lo + 1000
    if row[model.SCALE] is None:
        return (lo + hi) / 2
    return (_num(row, lo) + _num(row, hi)) // 2


def valid(row):
    """A wire value inside the row's type and range."""
    t = row[model.TYPE]
    if t in (model.ANALOG, model.COUNTER, model.ENUM):
        return _mid_number(row)
    if t == model.BINARY:
        return True
    if t == model.TIME:
        return T0
    if t == model.TEXT:
        return "x" * min(row[model.HI], 8)
    if t == model.SCHEDULE:
        return [T0, 900, [_mid_number(row), None, _mid_number(row)]]
    if t == model.CURVE:
        lo = _num(row, row[model.LO])
        hi = _num(row, row[model.HI])
        return [lo, hi, hi, lo]
    if t == model.ALARM:
        return [T0, 7, 2, True]
    if t == model.NONE:
        return None
    if t == model.MAP:
        return {}
    raise AssertionError("no test value for type %d" % t)


def _beyond(row):
    # a number just outside the range, or None if the range is open
    t = row[model.TYPE]
    lo = row[model.LO]
    hi = row[model.HI]
    unsigned = t in (model.ENUM, model.COUNTER)
    step = 1 if row[model.SCALE] is not None else 0.5
    if lo is not None and not (unsigned and lo == 0):
        return _num(row, lo) - step
    if hi is not None:
        return _num(row, hi) + step
    return None


def out_of_range(row):
    """(wire value, expected error code) outside the row's range, or None."""
    t = row[model.TYPE]
    if t == model.TEXT:
        return "x" * (row[model.HI] + 1), E.TOO_LARGE
    if t not in (model.ANALOG, model.COUNTER, model.ENUM, model.SCHEDULE, model.CURVE):
        return None
    b = _beyond(row)
    if b is None:
        return None
    if t == model.SCHEDULE:
        return [T0, 900, [_mid_number(row), b]], E.OUT_OF_RANGE
    if t == model.CURVE:
        v = valid(row)
        v[3] = b
        return v, E.OUT_OF_RANGE
    return b, E.OUT_OF_RANGE


WRONG = {
    model.ANALOG: "1", model.COUNTER: "1", model.ENUM: "1", model.TIME: "1",
    model.BINARY: 1, model.TEXT: 1, model.SCHEDULE: 1, model.CURVE: [1, 2, 3],
    model.ALARM: [1], model.NONE: 1, model.MAP: [], model.PLAN: 1,
}


def request(node, op, sid, body):
    """Send one request frame; return (reply op, reply body)."""
    _mid[0] = (_mid[0] + 1) & 0xFFFF
    reply = node.receive(F.encode(op, sid, _mid[0], body), 0)
    assert reply is not None
    rop, rsid, rmid, rbody = F.decode(reply)
    assert rsid == sid and rmid == _mid[0]
    return rop, rbody


def rows_with(mod, need):
    return [r for r in mod.OBJECTS if r[model.ACCESS] & need]


def assert_error(op_body, code, what):
    op, body = op_body
    assert op == F.ERROR, "%s: expected error %d, got %r" % (what, code, body)
    assert body[0] == code, "%s: expected error %d, got %r" % (what, code, body)


# ---------------------------------------------------------------- tables

def test_every_profile_loads_through_the_registry():
    assert len(registry.PROFILES) == len(registry.SERVICES)
    for name in registry.PROFILES:
        mod = registry.load(name)
        assert mod.NAME == name
        assert type(mod.VERSION) is tuple and len(mod.VERSION) == 2
        assert type(mod.VERSION[0]) is int and type(mod.VERSION[1]) is int
        assert type(mod.OBJECTS) is tuple and len(mod.OBJECTS) > 0
        assert registry.by_service(mod.SERVICE) is mod
        assert registry.SERVICES[mod.SERVICE] == name
    assert registry.by_service(0xFE) is None


def test_service_ids_are_unique_and_leave_the_core_services_alone():
    seen = []
    for mod in _profiles():
        sid = mod.SERVICE
        assert sid not in seen, "service 0x%02x used twice" % sid
        assert sid not in (S.NODE, S.TIME, S.PLANS)
        assert 0 < sid < S.VENDOR_FIRST
        seen.append(sid)


def test_object_ids_and_names_are_unique_within_a_profile():
    for mod in _profiles():
        ids = [r[model.ID] for r in mod.OBJECTS]
        names = [r[model.NAME] for r in mod.OBJECTS]
        for i in range(len(ids)):
            assert ids[i] not in ids[i + 1:], "%s: id %d twice" % (mod.NAME, ids[i])
            assert names[i] not in names[i + 1:], "%s: name %s twice" % (mod.NAME, names[i])


def test_every_row_is_well_formed():
    for mod in _profiles():
        for r in mod.OBJECTS:
            what = "%s.%s" % (mod.NAME, r[1])
            assert type(r) is tuple and len(r) == 9, what
            oid, name, t, unit, access, mand, lo, hi, scale = r
            assert type(oid) is int and 0 < oid <= 0xFFFF, what
            assert type(name) is str and name and name.lower() == name and " " not in name, what
            assert type(t) is int and 0 <= t < len(model.TYPE_NAMES), what
            assert type(unit) is str, what
            assert access in (model.R, model.W, model.X, model.RW, model.RX), what
            assert mand in (model.M, model.O), what
            assert scale is None or type(scale) is int, what
            if lo is not None and hi is not None:
                assert lo <= hi, what
            if t in (model.ANALOG, model.ENUM):
                assert lo is not None and hi is not None, what + ": needs a range"
            if t in (model.ENUM, model.COUNTER):
                assert scale == 0 or t == model.COUNTER, what
                assert lo is not None and lo >= 0, what
            if t == model.TEXT:
                assert type(hi) is int and hi > 0, what + ": TEXT needs a max length"
            if t == model.NONE:
                assert access == model.X, what + ": a NONE object is an action"
            if t in (model.SCHEDULE, model.CURVE):
                assert lo is not None and hi is not None, what


def test_device_profiles_begin_with_the_electrical_rows():
    for mod in _profiles():
        if mod.SERVICE >= 0x10:
            assert mod.OBJECTS[:len(ELECTRICAL)] == ELECTRICAL, mod.NAME


def test_commandable_and_electrical_objects_have_one_byte_keys():
    for mod in _profiles():
        for r in mod.OBJECTS:
            if r[model.MANDATORY] == model.M and r[model.ACCESS] & (model.W | model.X):
                assert r[model.ID] < 24, "%s.%s" % (mod.NAME, r[1])


# ---------------------------------------------------------------- node

def test_read_returns_the_value_set_for_every_readable_object():
    for mod in _profiles():
        node = Node([mod])
        sid = mod.SERVICE
        for r in rows_with(mod, model.R):
            oid = r[model.ID]
            w = valid(r)
            node.set(sid, oid, model.from_wire(r, w))
            op, body = request(node, F.READ, sid, [oid])
            assert op == F.RESULT, "%s.%s: %r" % (mod.NAME, r[1], body)
            assert body == {oid: w}, "%s.%s: %r != %r" % (mod.NAME, r[1], body, w)
        op, body = request(node, F.READ, sid, None)
        assert op == F.RESULT
        assert sorted(body) == sorted([r[model.ID] for r in rows_with(mod, model.R)])


def test_read_of_an_action_object_is_refused():
    for mod in _profiles():
        node = Node([mod])
        for r in mod.OBJECTS:
            if not r[model.ACCESS] & model.R:
                assert_error(request(node, F.READ, mod.SERVICE, [r[model.ID]]),
                             E.UNSUPPORTED, "%s.%s" % (mod.NAME, r[1]))


def test_write_in_range_is_stored_and_read_back():
    for mod in _profiles():
        node = Node([mod])
        sid = mod.SERVICE
        for r in rows_with(mod, model.W):
            oid = r[model.ID]
            w = valid(r)
            op, body = request(node, F.WRITE, sid, {oid: w})
            assert op == F.RESULT and body is None, "%s.%s: %r" % (mod.NAME, r[1], body)
            assert model.to_wire(r, node.get(sid, oid)) == w, "%s.%s" % (mod.NAME, r[1])
            assert node.pop_events() == [(EV_WRITE, sid, oid, None)]
            if r[model.ACCESS] & model.R:
                assert request(node, F.READ, sid, [oid]) == (F.RESULT, {oid: w})


def _refused_write(node, mod, r, value, code):
    sid = mod.SERVICE
    oid = r[model.ID]
    before = node.get(sid, oid)
    node.pop_events()
    assert_error(request(node, F.WRITE, sid, {oid: value}), code,
                 "%s.%s <- %r" % (mod.NAME, r[1], value))
    assert node.get(sid, oid) == before, "%s.%s changed" % (mod.NAME, r[1])
    assert node.pop_events() == []


def test_write_out_of_range_is_refused_without_change():
    tried = 0
    for mod in _profiles():
        node = Node([mod])
        for r in rows_with(mod, model.W):
            bad = out_of_range(r)
            if bad is None:
                continue
            request(node, F.WRITE, mod.SERVICE, {r[model.ID]: valid(r)})
            _refused_write(node, mod, r, bad[0], bad[1])
            tried += 1
    assert tried > 20


def test_write_of_the_wrong_type_is_refused_without_change():
    for mod in _profiles():
        node = Node([mod])
        for r in rows_with(mod, model.W):
            request(node, F.WRITE, mod.SERVICE, {r[model.ID]: valid(r)})
            _refused_write(node, mod, r, WRONG[r[model.TYPE]], E.WRONG_TYPE)
            if r[model.TYPE] == model.ANALOG and r[model.SCALE] is not None:
                _refused_write(node, mod, r, 1.5, E.WRONG_TYPE)


def test_write_to_a_read_only_or_action_object_is_refused_without_change():
    for mod in _profiles():
        node = Node([mod])
        for r in mod.OBJECTS:
            if r[model.ACCESS] & model.W:
                continue
            if r[model.ACCESS] & model.R:
                node.set(mod.SERVICE, r[model.ID], model.from_wire(r, valid(r)))
            v = valid(r)
            _refused_write(node, mod, r, v if v is not None else 0, E.READ_ONLY)


def test_write_with_one_bad_value_changes_nothing():
    for mod in _profiles():
        writable = rows_with(mod, model.W)
        if len(writable) < 2:
            continue
        node = Node([mod])
        good = writable[0]
        bad = writable[-1]
        assert_error(request(node, F.WRITE, mod.SERVICE,
                             {good[model.ID]: valid(good), bad[model.ID]: WRONG[bad[model.TYPE]]}),
                     E.WRONG_TYPE, mod.NAME)
        assert node.get(mod.SERVICE, good[model.ID]) is None
        assert node.pop_events() == []


def test_invoke_carries_out_actions_and_checks_their_argument():
    acts = 0
    for mod in _profiles():
        node = Node([mod])
        sid = mod.SERVICE
        for r in mod.OBJECTS:
            oid = r[model.ID]
            what = "%s.%s" % (mod.NAME, r[1])
            if not r[model.ACCESS] & model.X:
                assert_error(request(node, F.INVOKE, sid, [oid, valid(r)]), E.READ_ONLY, what)
                continue
            w = valid(r)
            body = [oid] if w is None else [oid, w]
            op, res = request(node, F.INVOKE, sid, body)
            assert op == F.RESULT, "%s: %r" % (what, res)
            assert node.pop_events() == [(EV_INVOKE, sid, oid, w)], what
            assert_error(request(node, F.INVOKE, sid, [oid, WRONG[r[model.TYPE]]]),
                         E.WRONG_TYPE, what)
            bad = out_of_range(r)
            if bad is not None:
                assert_error(request(node, F.INVOKE, sid, [oid, bad[0]]), bad[1], what)
            assert node.pop_events() == [], what
            acts += 1
    assert acts >= 5
