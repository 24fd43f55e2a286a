"""The device's security service (core.pairing): the bridge provisions peers with
sealed INVOKE frames; roles follow; bad, forged, replayed or unauthorised
provisioning is refused and changes nothing; the roster is bounded and survives
a reboot through the port's store. Portable: plain asserts."""
from spot.core import cbor
from spot.core import frame as F
from spot.core import errors as E
from spot.core import pairing as P
from spot.core.ccm import Ccm
from spot.core.coap_oscore import OscoreServer
from spot.core.node import Node
from spot.core.oscore import SecurityContext, OscoreError
from spot.core.roster import Roster, OWNER, INSTALLER, AGGREGATOR, MONITOR
from spot.core.secure_frame import seal, open_sealed
from spot.core.services import HEAT_PUMP as HP, SECURITY
from spot.profiles import heat_pump

from _assert import raises

PROVISIONING_SECRET = b"device-hp-1-provisioning-secret!"
DEVICE_ID = b"\x01"
BRIDGE_KID = b"\x00"
PHONE = b"\xa1"
METER_APP = b"\xa2"
DEVICE_FOR_PEERS = b"\xd1"
FLOW_SETPOINT = 7
KEY = P.wrap_key(PROVISIONING_SECRET)


class Device:
    """A node with its bridge context, roster and security service; saves kept."""

    def __init__(self, max_peers=8, saved=None, fail_store=False):
        self.node = Node([heat_pump], "hp-1")
        self.node.set(HP, FLOW_SETPOINT, 21.5)
        self.bridge_ctx = SecurityContext(PROVISIONING_SECRET, DEVICE_ID, BRIDGE_KID)
        self.oscore = OscoreServer([self.bridge_ctx])
        self.roster = Roster(max_peers)
        self.saves = []
        self.fail_store = fail_store
        self.pairing = P.DevicePairing(self.node, self.oscore, self.roster, BRIDGE_KID, KEY,
                                       save=self.store, saved=saved)
        self.mid = 0

    def store(self, data):
        if self.fail_store:
            raise OSError("flash write failed")
        self.saves.append(data)

    def ask(self, op, sid, body, peer):
        self.mid += 1
        reply = self.node.receive(F.encode(op, sid, self.mid, body), 0, peer)
        op, _, mid, body = F.decode(reply)
        assert mid == self.mid
        return op, body

    def invoke(self, oid, arg, peer=BRIDGE_KID):
        return self.ask(F.INVOKE, SECURITY, [oid, arg], peer)

    def state(self):
        """Everything provisioning may change."""
        return (dict(self.roster.roles), [c.recipient_id for c in self.oscore.contexts],
                self.pairing.seq, len(self.saves), self.node.wire(SECURITY, P.PEERS))


class Seq:
    """The bridge's provisioning numbers and nonces (deterministic here)."""

    def __init__(self, start=1):
        self.n = start

    def next(self):
        n = self.n
        self.n += 1
        return n, bytes(12) + bytes((n & 0xFF,))


SEQ = Seq()


def secret_of(kid):
    return b"peer-secret-for-" + kid + bytes(15)


def add_arg(kid, role, key=KEY, secret=None, salt=b"", sender_id=DEVICE_FOR_PEERS, seq=None):
    n, nonce = SEQ.next()
    return P.seal_add(key, n if seq is None else seq, kid, role,
                      secret or secret_of(kid), salt, sender_id, nonce)


def remove_arg(kid, key=KEY):
    n, nonce = SEQ.next()
    return P.seal_remove(key, n, kid, nonce)


def controller(kid, secret=None):
    """The controller's half: its Sender ID is the kid the device knows it by."""
    return SecurityContext(secret or secret_of(kid), kid, DEVICE_FOR_PEERS)


def ok(reply):
    return reply == (F.RESULT, None)


def error_code(reply):
    assert reply[0] == F.ERROR, reply
    return reply[1][0]


# ---- provisioning by the bridge -------------------------------------------------------------

def test_the_security_service_is_served_and_announced():
    d = Device()
    body = F.decode(d.node.announce())[3]
    assert [SECURITY, 1, 0] in body[1]
    assert d.roster.role(BRIDGE_KID) == OWNER
    assert d.ask(F.READ, SECURITY, [P.PEERS, P.MAX_PEERS, P.SEQ], BRIDGE_KID) == (
        F.RESULT, {P.PEERS: {BRIDGE_KID: OWNER}, P.MAX_PEERS: 8, P.SEQ: 0})


def test_add_peer_from_the_bridge_gives_the_peer_its_role_and_a_context():
    d = Device()
    assert ok(d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR)))
    assert d.roster.role(PHONE) == AGGREGATOR
    assert d.oscore.context(PHONE).sender_id == DEVICE_FOR_PEERS
    assert d.node.wire(SECURITY, P.PEERS) == {BRIDGE_KID: OWNER, PHONE: AGGREGATOR}
    assert len(d.saves) == 1


def test_the_peer_protects_with_its_half_and_the_device_knows_it_by_its_kid():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    sealed = seal(controller(PHONE), F.encode(F.WRITE, HP, 9, {FLOW_SETPOINT: 300}))
    frame, ctx = open_sealed(d.oscore.contexts, sealed)
    assert ctx.recipient_id == PHONE
    assert d.node.receive(frame, 0, ctx.recipient_id) == F.encode(F.RESULT, HP, 9)
    assert d.node.get(HP, FLOW_SETPOINT) == 30.0


def test_a_peer_with_another_secret_is_not_opened():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    sealed = seal(controller(PHONE, b"guessed-secret-0"), F.encode(F.READ, HP, 1, None))
    assert raises(OscoreError, open_sealed, d.oscore.contexts, sealed).code == 0x80


def test_monitor_peer_reads_but_its_write_is_not_authorised():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(METER_APP, MONITOR))
    assert d.ask(F.READ, HP, [FLOW_SETPOINT], METER_APP) == (F.RESULT, {FLOW_SETPOINT: 215})
    assert error_code(d.ask(F.WRITE, HP, {FLOW_SETPOINT: 300}, METER_APP)) == E.NOT_AUTHORISED
    assert d.node.get(HP, FLOW_SETPOINT) == 21.5


def test_adding_a_known_peer_again_replaces_role_and_keys_and_ends_its_subscriptions():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    assert d.ask(F.SUBSCRIBE, HP, {8: None}, PHONE)[0] == F.RESULT
    old = d.oscore.context(PHONE)
    assert ok(d.invoke(P.ADD_PEER, add_arg(PHONE, MONITOR, secret=b"a-new-secret-016")))
    assert d.roster.role(PHONE) == MONITOR
    assert d.oscore.context(PHONE) is not old
    assert [c.recipient_id for c in d.oscore.contexts].count(PHONE) == 1
    assert d.node.subs.subs == []


def test_remove_peer_drops_role_context_and_subscriptions():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    d.ask(F.SUBSCRIBE, HP, {8: None}, PHONE)
    assert ok(d.invoke(P.REMOVE_PEER, remove_arg(PHONE)))
    assert d.roster.role(PHONE) is None
    assert PHONE not in [c.recipient_id for c in d.oscore.contexts]
    assert d.node.subs.subs == []
    assert d.node.wire(SECURITY, P.PEERS) == {BRIDGE_KID: OWNER}
    assert error_code(d.ask(F.WRITE, HP, {FLOW_SETPOINT: 300}, PHONE)) == E.NOT_AUTHORISED


def test_removing_an_unknown_peer_succeeds_and_changes_only_the_number():
    d = Device()
    assert ok(d.invoke(P.REMOVE_PEER, remove_arg(b"\x55")))
    assert d.roster.roles == {BRIDGE_KID: OWNER} and len(d.oscore.contexts) == 1


def test_the_bridge_itself_cannot_be_removed_or_replaced():
    d = Device()
    before = d.state()
    assert error_code(d.invoke(P.REMOVE_PEER, remove_arg(BRIDGE_KID))) == E.OUT_OF_RANGE
    assert error_code(d.invoke(P.ADD_PEER, add_arg(BRIDGE_KID, MONITOR))) == E.OUT_OF_RANGE
    assert d.state() == before


# ---- who may provision -----------------------------------------------------------------------

def test_only_the_bridge_may_add_peers_even_an_owner_peer_may_not():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, OWNER))
    before = d.state()
    reply = d.invoke(P.ADD_PEER, add_arg(METER_APP, OWNER), peer=PHONE)
    assert error_code(reply) == E.NOT_AUTHORISED
    reply = d.invoke(P.REMOVE_PEER, remove_arg(PHONE), peer=PHONE)
    assert error_code(reply) == E.NOT_AUTHORISED
    assert d.state() == before


def test_unpaired_peer_add_peer_is_not_authorised_and_changes_nothing():
    d = Device()
    before = d.state()
    for peer in (b"\x77", None, ("10.0.0.5", 5683)):
        assert error_code(d.invoke(P.ADD_PEER, add_arg(b"\x77", OWNER), peer=peer)) == \
            E.NOT_AUTHORISED
    assert d.state() == before


def test_owners_and_installers_read_the_roster_aggregators_and_monitors_do_not():
    d = Device()
    for kid, role in ((b"\x10", OWNER), (b"\x11", INSTALLER), (b"\x12", AGGREGATOR),
                      (b"\x13", MONITOR)):
        d.invoke(P.ADD_PEER, add_arg(kid, role))
    assert d.ask(F.READ, SECURITY, [P.PEERS], b"\x10")[0] == F.RESULT
    assert d.ask(F.READ, SECURITY, [P.PEERS], b"\x11")[0] == F.RESULT
    assert error_code(d.ask(F.READ, SECURITY, [P.PEERS], b"\x12")) == E.NOT_AUTHORISED
    assert error_code(d.ask(F.READ, SECURITY, [P.PEERS], b"\x13")) == E.NOT_AUTHORISED


# ---- forged, tampered and replayed provisioning --------------------------------------------

def test_add_peer_sealed_with_another_key_is_not_authorised_and_changes_nothing():
    d = Device()
    before = d.state()
    other = P.wrap_key(b"some-other-device-provisioning!!")
    assert error_code(d.invoke(P.ADD_PEER, add_arg(PHONE, OWNER, key=other))) == \
        E.NOT_AUTHORISED
    assert d.state() == before


def test_a_role_changed_in_transit_breaks_the_seal():
    d = Device()
    before = d.state()
    arg = add_arg(PHONE, MONITOR)
    arg[P.K_ROLE] = OWNER
    assert error_code(d.invoke(P.ADD_PEER, arg)) == E.NOT_AUTHORISED
    arg = remove_arg(PHONE)
    arg[P.K_KID] = METER_APP
    assert error_code(d.invoke(P.REMOVE_PEER, arg)) == E.NOT_AUTHORISED
    assert d.state() == before


def test_a_replayed_add_peer_is_refused_after_the_peer_was_removed():
    d = Device()
    arg = add_arg(PHONE, OWNER)
    d.invoke(P.ADD_PEER, arg)
    d.invoke(P.REMOVE_PEER, remove_arg(PHONE))
    before = d.state()
    assert d.invoke(P.ADD_PEER, arg) == (F.ERROR, [E.NOT_AUTHORISED, "stale seq"])
    assert d.state() == before


def test_the_secret_travels_only_sealed():
    arg = add_arg(PHONE, OWNER)
    frame = F.encode(F.INVOKE, SECURITY, 1, [P.ADD_PEER, arg])
    assert secret_of(PHONE) not in frame and secret_of(PHONE)[:8] not in frame
    # box = CBOR [secret, salt, sender id] + 8-byte tag
    assert len(arg[P.K_BOX]) == len(cbor.dumps([secret_of(PHONE), b"", DEVICE_FOR_PEERS])) + 8


# ---- bad arguments ---------------------------------------------------------------------------

def _sealed_credential(plaintext, kid=PHONE, role=OWNER):
    n, nonce = SEQ.next()
    box = Ccm(KEY, 8, 2).encrypt(nonce, plaintext, cbor.dumps([P.ADD_PEER, n, kid, role]))
    return {0: n, 1: kid, 2: role, 3: nonce, 4: box}


def test_bad_arguments_are_refused_with_their_error_and_change_nothing():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(METER_APP, MONITOR))
    before = d.state()
    good = add_arg(PHONE, OWNER)

    def without(key):
        arg = dict(good)
        del arg[key]
        return arg

    def with_(key, value):
        arg = dict(good)
        arg[key] = value
        return arg
    cases = (
        ([P.ADD_PEER, PHONE], E.WRONG_TYPE),                 # not a map
        ([P.ADD_PEER, without(P.K_BOX)], E.MALFORMED),
        ([P.ADD_PEER, without(P.K_ROLE)], E.MALFORMED),
        ([P.ADD_PEER, with_(P.K_KID, "a1")], E.WRONG_TYPE),
        ([P.ADD_PEER, with_(P.K_SEQ, -1)], E.WRONG_TYPE),
        ([P.ADD_PEER, with_(P.K_ROLE, True)], E.WRONG_TYPE),
        ([P.ADD_PEER, with_(P.K_ROLE, 9)], E.OUT_OF_RANGE),
        ([P.ADD_PEER, with_(P.K_KID, bytes(8))], E.OUT_OF_RANGE),
        ([P.ADD_PEER, with_(P.K_NONCE, bytes(12))], E.OUT_OF_RANGE),
        ([P.ADD_PEER, with_(P.K_BOX, b"\x00" * 5)], E.OUT_OF_RANGE),
        ([P.ADD_PEER, with_(P.K_BOX, b"\x00" * 40)], E.NOT_AUTHORISED),
        ([P.ADD_PEER, _sealed_credential(b"\xff\xff")], E.MALFORMED),
        ([P.ADD_PEER, _sealed_credential(cbor.dumps([b"short", b"", b"\xd1"]))],
         E.OUT_OF_RANGE),
        ([P.ADD_PEER, _sealed_credential(cbor.dumps([secret_of(PHONE), b"", PHONE]))],
         E.OUT_OF_RANGE),
        ([P.ADD_PEER, _sealed_credential(cbor.dumps([secret_of(PHONE), "", b"\xd1"]))],
         E.WRONG_TYPE),
        ([P.ADD_PEER, _sealed_credential(cbor.dumps([secret_of(PHONE)]))], E.MALFORMED),
        ([P.REMOVE_PEER, {0: 99, 1: PHONE}], E.MALFORMED),
        ([P.PEERS, {}], E.READ_ONLY),                        # not an action
        ([9, {}], E.UNKNOWN_OBJECT),
        (P.ADD_PEER, E.MALFORMED),                           # INVOKE body not a list
    )
    for body, code in cases:
        reply = d.ask(F.INVOKE, SECURITY, body, BRIDGE_KID)
        assert error_code(reply) == code, (body, reply)
        assert d.state() == before, body


def test_truncated_and_garbage_frames_change_nothing():
    d = Device()
    before = d.state()
    whole = F.encode(F.INVOKE, SECURITY, 5, [P.ADD_PEER, add_arg(PHONE, OWNER)])
    for frame in (whole[:len(whole) // 2], whole[:4] + b"\xff\x00", whole[:3]):
        reply = d.node.receive(frame, 0, BRIDGE_KID)
        assert reply is None or F.decode(reply)[0] == F.ERROR
    assert d.state() == before


def test_the_roster_is_bounded_and_a_full_roster_answers_busy():
    d = Device(max_peers=3)          # the bridge and two peers
    assert ok(d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR)))
    assert ok(d.invoke(P.ADD_PEER, add_arg(METER_APP, MONITOR)))
    before = d.state()
    assert error_code(d.invoke(P.ADD_PEER, add_arg(b"\xa3", MONITOR))) == E.BUSY
    assert d.state() == before
    assert len(d.oscore.contexts) == 3
    assert ok(d.invoke(P.ADD_PEER, add_arg(PHONE, OWNER)))     # replacing still fits
    assert d.roster.role(PHONE) == OWNER


def test_a_failing_store_answers_busy_and_changes_nothing():
    d = Device(fail_store=True)
    before = d.state()
    assert error_code(d.invoke(P.ADD_PEER, add_arg(PHONE, OWNER))) == E.BUSY
    assert d.state() == before


# ---- persistence -----------------------------------------------------------------------------

def test_a_rebooted_device_restores_its_peers_from_the_saved_record():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    d.invoke(P.ADD_PEER, add_arg(METER_APP, MONITOR))
    d.invoke(P.REMOVE_PEER, remove_arg(METER_APP))
    seq = d.pairing.seq
    again = Device(saved=d.saves[-1])
    assert again.roster.roles == {BRIDGE_KID: OWNER, PHONE: AGGREGATOR}
    assert again.pairing.seq == seq
    sealed = seal(controller(PHONE), F.encode(F.READ, HP, 1, [FLOW_SETPOINT]))
    frame, ctx = open_sealed(again.oscore.contexts, sealed)
    assert ctx.recipient_id == PHONE
    # the old provisioning commands stay refused after the reboot
    assert error_code(again.invoke(P.ADD_PEER, add_arg(METER_APP, OWNER, seq=seq))) == \
        E.NOT_AUTHORISED


def test_after_a_reboot_the_device_never_reuses_a_sequence_number():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    ctx = d.oscore.context(PHONE)
    for _ in range(5):
        seal(ctx, F.encode(F.NOTIFY, HP, 1, [0, {8: 352}]))
    used = ctx.sender_seq
    again = Device(saved=d.saves[-1])
    assert again.oscore.context(PHONE).sender_seq >= used


def test_requests_seen_before_the_last_save_are_replays_after_a_reboot():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    phone = controller(PHONE)
    old = seal(phone, F.encode(F.WRITE, HP, 1, {FLOW_SETPOINT: 300}))
    open_sealed(d.oscore.contexts, old)
    d.invoke(P.ADD_PEER, add_arg(METER_APP, MONITOR))    # saves the window too
    again = Device(saved=d.saves[-1])
    assert raises(OscoreError, open_sealed, again.oscore.contexts, old).code == 0x81
    fresh = seal(phone, F.encode(F.READ, HP, 2, None))
    assert open_sealed(again.oscore.contexts, fresh)[1].recipient_id == PHONE


def test_checkpoint_renews_the_reservation_before_it_runs_out():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    ctx = d.oscore.context(PHONE)
    assert not d.pairing.checkpoint()
    for _ in range(20):          # reserve 32: 12 left, fewer than half
        seal(ctx, F.encode(F.NOTIFY, HP, 1, [0, {8: 352}]))
    saves = len(d.saves)
    assert d.pairing.checkpoint() and len(d.saves) == saves + 1
    assert ctx.sender_seq_remaining() >= 32
    for _ in range(40):
        seal(ctx, F.encode(F.NOTIFY, HP, 1, [0, {8: 352}]))
        d.pairing.checkpoint()


def test_without_a_checkpoint_the_context_stops_sending_instead_of_reusing_numbers():
    d = Device()
    d.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    ctx = d.oscore.context(PHONE)
    for _ in range(32):
        seal(ctx, F.encode(F.NOTIFY, HP, 1, [0, {8: 352}]))
    assert raises(OscoreError, seal, ctx, F.encode(F.NOTIFY, HP, 1, [0, {8: 352}]))


def test_a_corrupt_saved_record_is_a_value_error():
    good = Device()
    good.invoke(P.ADD_PEER, add_arg(PHONE, AGGREGATOR))
    record = good.saves[-1]
    for bad in (b"\xff", cbor.dumps([1, 2]), cbor.dumps({0: 1, 1: [[PHONE, 9]]}),
                record[:len(record) - 3]):
        raises(ValueError, Device, 8, bad)
