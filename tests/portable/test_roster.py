"""Access control by role, and the node refusing unpaired or wrong-role peers."""
from spot.core import frame as F
from spot.core import errors as E
from spot.core.node import Node
from spot.core.roster import Roster, OWNER, AGGREGATOR, MONITOR, INSTALLER
from spot.core.services import HEAT_PUMP, DEVICE_INFO, TIME
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
