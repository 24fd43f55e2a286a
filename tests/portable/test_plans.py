"""Plans: default plan, temporary plans with primacy and expiry, fallback (fake clock)."""
from spot.core import frame as F
from spot.core import errors as E
from spot.core import plans as P
from spot.core.node import Node, EV_FALLBACK, EV_PLAN
from spot.core.services import HEAT_PUMP as HP, PLANS
from spot.profiles import heat_pump

T0 = 1700000000
SG = 6          # sg_ready
LIMIT = 17      # power_limit, W
HOUR = 3600


def make_node(**kw):
    node = Node([heat_pump], "hp-1", **kw)
    node.receive(F.encode(F.WRITE, PLANS, 1, {P.DEFAULT: {HP: {SG: 2, LIMIT: 5000}}}), T0)
    node.step(T0)
    node.pop_events()
    return node


def push(node, plan, now=T0, mid=2):
    return F.decode(node.receive(F.encode(F.INVOKE, PLANS, mid, [P.PUSH, plan]), now))


def cancel(node, pid, now):
    return F.decode(node.receive(F.encode(F.INVOKE, PLANS, 3, [P.CANCEL, pid]), now))


def test_default_plan_governs_without_temporary_plans():
    node = make_node()
    assert node.get(HP, SG) == 2 and node.get(HP, LIMIT) == 5000
    assert node.values[PLANS][P.ACTIVE] == 0


def test_temporary_plan_starts_at_its_start_and_ends_at_expiry():
    node = make_node(comm_timeout=4 * HOUR)
    op, _, _, body = push(node, [7, T0 + HOUR, T0 + 2 * HOUR, 10, {HP: {SG: 1}}])
    assert op == F.RESULT and body is None
    node.step(T0 + 10)
    assert node.get(HP, SG) == 2
    assert node.next_deadline(T0 + 10) == HOUR - 10
    node.receive(F.encode(F.READ, HP, 4, [SG]), T0 + HOUR)  # keeps contact
    node.step(T0 + HOUR)
    assert node.get(HP, SG) == 1
    assert node.values[PLANS][P.ACTIVE] == 7
    node.receive(F.encode(F.READ, HP, 5, [SG]), T0 + 2 * HOUR)
    node.step(T0 + 2 * HOUR)
    assert node.get(HP, SG) == 2
    assert node.values[PLANS][P.LIST] == []


def test_higher_primacy_wins():
    node = make_node()
    push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 3}}])
    push(node, [2, T0, T0 + HOUR, 9, {HP: {SG: 1}}], mid=3)
    push(node, [3, T0, T0 + HOUR, 7, {HP: {SG: 4, LIMIT: 1000}}], mid=4)
    node.step(T0 + 1)
    assert node.get(HP, SG) == 1            # primacy 9
    assert node.get(HP, LIMIT) == 1000      # only plan 3 sets it
    assert node.values[PLANS][P.ACTIVE] == 2


def test_equal_primacy_the_later_push_wins():
    node = make_node()
    push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 3}}])
    push(node, [2, T0, T0 + HOUR, 5, {HP: {SG: 4}}], mid=3)
    node.step(T0 + 1)
    assert node.get(HP, SG) == 4


def test_pushing_same_id_replaces_the_plan():
    node = make_node()
    push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 3}}])
    push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 4}}], mid=3)
    node.step(T0 + 1)
    assert node.get(HP, SG) == 4
    assert len(node.plans.temp) == 1


def test_cancel_restores_the_default_plan():
    node = make_node()
    push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 1}}])
    node.step(T0 + 1)
    assert node.get(HP, SG) == 1
    op, _, _, _ = cancel(node, 1, T0 + 2)
    assert op == F.RESULT
    node.step(T0 + 2)
    assert node.get(HP, SG) == 2
    op, _, _, body = cancel(node, 1, T0 + 3)
    assert body[0] == E.UNKNOWN_OBJECT


def test_scheduled_plan_follows_its_slots():
    node = make_node()
    push(node, [1, T0, T0 + 3 * HOUR, 5, {HP: {LIMIT: [T0, HOUR, [1000, None, 3000]]}}])
    node.step(T0)
    assert node.get(HP, LIMIT) == 1000
    node.receive(F.encode(F.READ, HP, 9, [SG]), T0 + HOUR)
    node.step(T0 + HOUR)
    assert node.get(HP, LIMIT) == 5000  # null slot: the default plan governs
    node.receive(F.encode(F.READ, HP, 9, [SG]), T0 + 2 * HOUR)
    node.step(T0 + 2 * HOUR)
    assert node.get(HP, LIMIT) == 3000


def test_silence_past_comm_timeout_falls_back_to_default_plan():
    node = make_node(comm_timeout=600)
    push(node, [1, T0, T0 + 4 * HOUR, 5, {HP: {SG: 1}}])
    node.step(T0 + 1)
    assert node.get(HP, SG) == 1
    assert node.next_deadline(T0 + 1) == 599
    node.step(T0 + 599)
    assert node.get(HP, SG) == 1
    node.step(T0 + 600)
    assert node.get(HP, SG) == 2
    assert node.values[PLANS][P.FALLBACK] is True
    assert (EV_FALLBACK, PLANS, None, True) in node.pop_events()


def test_contact_after_fallback_resumes_unexpired_plans():
    node = make_node(comm_timeout=600)
    push(node, [1, T0, T0 + 4 * HOUR, 5, {HP: {SG: 1}}])
    node.step(T0 + 700)
    assert node.get(HP, SG) == 2
    node.receive(F.encode(F.READ, HP, 9, [SG]), T0 + 800)
    node.step(T0 + 800)
    assert node.get(HP, SG) == 1
    assert node.values[PLANS][P.FALLBACK] is False


def test_plan_with_bad_entry_is_refused_whole():
    node = make_node()
    before = repr((node.plans.temp, node.values[HP]))
    op, _, _, body = push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 1, LIMIT: 99999}}])
    assert op == F.ERROR and body == [E.OUT_OF_RANGE, LIMIT]
    assert repr((node.plans.temp, node.values[HP])) == before


def test_plan_on_read_only_object_is_refused():
    node = make_node()
    op, _, _, body = push(node, [1, T0, T0 + HOUR, 5, {HP: {8: 300}}])
    assert body == [E.READ_ONLY, 8]


def test_plan_skips_unknown_objects_and_says_so():
    node = make_node()
    op, _, _, body = push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 3, 99: 1}, 0x77: {1: 1}}])
    assert op == F.RESULT
    assert sorted(body) == [[HP, 99], [0x77, 1]]


def test_plan_expiry_must_be_ahead_and_within_horizon():
    node = make_node(max_horizon=48 * HOUR)
    for start, expiry in ((T0, T0), (T0 - 2 * HOUR, T0 - HOUR), (T0, T0 + 49 * HOUR)):
        op, _, _, body = push(node, [1, start, expiry, 5, {HP: {SG: 1}}])
        assert body[0] == E.OUT_OF_RANGE, (start, expiry)
    assert node.plans.temp == []


def test_plan_store_is_bounded():
    node = make_node(max_plans=2)
    push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 1}}])
    push(node, [2, T0, T0 + HOUR, 5, {HP: {SG: 1}}], mid=3)
    op, _, _, body = push(node, [3, T0, T0 + HOUR, 5, {HP: {SG: 1}}], mid=4)
    assert body[0] == E.BUSY
    op, _, _, body = push(node, [2, T0, T0 + HOUR, 6, {HP: {SG: 3}}], mid=5)
    assert op == F.RESULT  # replacing an existing id needs no room


def test_active_plan_change_is_an_event():
    node = make_node()
    push(node, [4, T0, T0 + HOUR, 5, {HP: {SG: 3}}])
    node.step(T0 + 1)
    assert (EV_PLAN, PLANS, None, 4) in node.pop_events()


def test_malformed_plan_is_malformed():
    node = make_node()
    for plan in (None, [1, 2, 3], [1, T0, T0 + HOUR, 5, [1]], [1, T0, T0 + HOUR, -5, {}]):
        op, _, _, body = push(node, plan)
        assert op == F.ERROR and body[0] in (E.MALFORMED, E.WRONG_TYPE), plan
    assert node.plans.temp == []


def test_silence_without_temporary_plans_is_not_fallback():
    node = make_node(comm_timeout=600)
    node.receive(F.encode(F.WRITE, HP, 9, {LIMIT: 2000}), T0)
    node.step(T0 + 5000)
    assert node.values[PLANS][P.FALLBACK] is False
    assert node.get(HP, LIMIT) == 2000  # a direct write stands while no plan changes


def test_a_write_right_after_a_clock_set_is_not_undone_by_the_plans():
    # the bridge's first command may reach the node before its next step (spec 3.1:
    # the clock comes with the registration's answer, the command right after it)
    node = make_node()
    node.receive(F.encode(F.WRITE, 2, 4, {1: T0 + 100}), T0 + 1)   # time: unix_time
    node.receive(F.encode(F.WRITE, HP, 5, {SG: 4}), T0 + 1)
    node.step(T0 + 2)
    assert node.get(HP, SG) == 4


def test_local_default_plan_is_checked_and_applied():
    node = Node([heat_pump], "hp-1")
    node.set_default_plan({HP: {SG: 2}})
    node.step(T0)
    assert node.get(HP, SG) == 2
    try:
        node.set_default_plan({HP: {SG: 9}})
    except Exception as e:
        assert e.code == E.OUT_OF_RANGE
    else:
        raise AssertionError("bad default plan accepted")
    assert node.plans.default == {HP: {SG: 2}}


def test_request_answered_with_error_does_not_end_fallback():
    node = make_node(comm_timeout=600)
    push(node, [1, T0, T0 + 4 * HOUR, 5, {HP: {SG: 1}}])
    node.step(T0 + 700)
    assert node.values[PLANS][P.FALLBACK] is True
    reply = F.decode(node.receive(F.encode(F.WRITE, HP, 9, {7: 900}), T0 + 800))
    assert reply[3] == [E.OUT_OF_RANGE, 7]
    node.step(T0 + 800)
    assert node.values[PLANS][P.FALLBACK] is True and node.get(HP, SG) == 2


def test_plan_entries_need_write_rights_on_their_service():
    from spot.core.roster import Roster, AGGREGATOR
    from spot.profiles import device_info
    node = Node([heat_pump, device_info], "hp-1")
    roster = Roster()
    roster.pair("agg", AGGREGATOR)
    node.authorise = roster.authorise
    plan = [1, T0, T0 + HOUR, 5, {device_info.SERVICE: {1: "pwned"}}]
    reply = F.decode(node.receive(F.encode(F.INVOKE, PLANS, 2, [P.PUSH, plan]), T0, "agg"))
    assert reply[3] == [E.NOT_AUTHORISED, device_info.SERVICE]
    assert node.plans.temp == []


def test_plan_entries_for_the_time_service_are_skipped():
    node = make_node()
    op, _, _, body = push(node, [1, T0, T0 + HOUR, 5, {HP: {SG: 3}, 2: {1: 5}}])
    assert op == F.RESULT and body == [[2, 1]]
