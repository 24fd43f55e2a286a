"""Access control by role, and the node refusing unpaired or wrong-role peers."""
from spot.core import frame as F
from spot.core import errors as E
from spot.core.node import Node
from spot.core.roster import Roster, OWNER, AGGREGATOR, MONITOR, INSTALLER, role_allows
from spot.core.services import HEAT_PUMP, DEVICE_INFO, TIME, SECURITY
from spot.profiles import heat_pump


def roster():
    r = Roster()
    r.pair(b"owner", OWNER)
    r.pair(b"agg", AGGREGATOR)
    r.pair(b"mon", MONITOR)
    r.pair(b"inst", INSTALLER)
    return r


def test_unpaired_peer_may_do_nothing():
    r = roster()
    for op in (F.READ, F.WRITE, F.INVOKE, F.SUBSCRIBE):
        assert not r.authorise(b"stranger", op, HEAT_PUMP)


def test_monitor_reads_but_never_writes():
    r = roster()
    assert r.authorise(b"mon", F.READ, HEAT_PUMP)
    assert r.authorise(b"mon", F.SUBSCRIBE, HEAT_PUMP)
    assert not r.authorise(b"mon", F.WRITE, HEAT_PUMP)
    assert not r.authorise(b"mon", F.INVOKE, HEAT_PUMP)


def test_aggregator_commands_but_may_not_change_device_settings():
    r = roster()
    assert r.authorise(b"agg", F.WRITE, HEAT_PUMP)
    assert r.authorise(b"agg", F.INVOKE, HEAT_PUMP)
    assert not r.authorise(b"agg", F.WRITE, DEVICE_INFO)
    assert not r.authorise(b"agg", F.WRITE, TIME)
    assert r.authorise(b"inst", F.WRITE, TIME)


def test_the_security_service_is_closed_to_aggregator_and_monitor_even_for_reads():
    for role in (AGGREGATOR, MONITOR):
        for op in (F.READ, F.SUBSCRIBE, F.UNSUBSCRIBE, F.WRITE, F.INVOKE):
            assert not role_allows(role, op, SECURITY), (role, op)
    r = roster()
    assert not r.authorise(b"agg", F.READ, SECURITY)
    assert not r.authorise(b"mon", F.SUBSCRIBE, SECURITY)
    assert r.authorise(b"agg", F.READ, HEAT_PUMP) and r.authorise(b"mon", F.READ, HEAT_PUMP)


def test_owner_and_installer_keep_every_operation_on_the_security_service():
    for role in (OWNER, INSTALLER):
        for op in (F.READ, F.SUBSCRIBE, F.UNSUBSCRIBE, F.WRITE, F.INVOKE):
            assert role_allows(role, op, SECURITY), (role, op)


def test_unpair_revokes():
    r = roster()
    r.unpair(b"agg")
    assert not r.authorise(b"agg", F.READ, HEAT_PUMP)


def test_roster_is_bounded_and_checks_roles():
    r = Roster(max_peers=1)
    r.pair(b"a", OWNER)
    r.pair(b"a", MONITOR)  # re-pairing changes the role, needs no room
    for peer, role in ((b"b", OWNER), (b"c", 99)):
        try:
            r.pair(peer, role)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % ((peer, role),))


def test_node_refuses_wrong_role_and_changes_nothing():
    node = Node([heat_pump], "hp-1")
    node.authorise = roster().authorise
    write = F.encode(F.WRITE, HEAT_PUMP, 5, {7: 300})
    reply = F.decode(node.receive(write, 0, b"mon"))
    assert reply[0] == F.ERROR and reply[3] == [E.NOT_AUTHORISED]
    assert node.get(HEAT_PUMP, 7) is None
    reply = F.decode(node.receive(write, 0, b"owner"))
    assert reply[0] == F.RESULT and node.get(HEAT_PUMP, 7) == 30.0
