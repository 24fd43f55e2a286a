"""Pairing on the device: the security service and the roster it keeps.

The bridge pairs controllers with a device (cloud_bridge.pairing) and
provisions the device with INVOKEs on the security service (0x08), queued and
sent like any command over the device's OSCORE link with the bridge:

    1 add_peer     INVOKE {0: seq, 1: kid, 2: role, 3: nonce, 4: box}
    2 remove_peer  INVOKE {0: seq, 1: kid, 3: nonce, 4: box}
    3 peers        READ   {kid: role}, the bridge included
    4 max_peers    READ   how many peers fit, the bridge included
    5 seq          READ   the last provisioning number accepted

kid is the peer's OSCORE Sender ID (the device's Recipient ID for it); role
is a core.roster role. box is AES-CCM-16-64-128 under the device's wrap key
(wrap_key(): HKDF of its provisioning secret) with `nonce`, sealing the CBOR
[master secret, master salt, device's Sender ID] for add_peer and nothing
for remove_peer; the AAD is CBOR [object, seq, kid, role or None]. So a
peer's secret is sealed from the bridge's pairing code to the device: the
command queue, the API and every carrier see only the box. seq must grow
with each provisioning command, so an old one replayed is refused.

DevicePairing wires a Node, its OSCORE layer (anything with a `contexts`
list: core.coap_oscore.OscoreServer, core.mqtt_binding.MqttBinding) and a
core.roster.Roster together: node.authorise follows the roster; a peer added
gets a role and an OSCORE context, a peer removed loses both and its
subscriptions. Only the bridge (bridge_kid, role owner) may add or remove
peers; owners and installers may read the roster. Bad arguments are answered
ERROR (malformed, wrong-type, out-of-range, not-authorised, busy when the
roster is full) and change nothing.

Persistence: save(bytes) is the port's store (raises OSError on failure); the
record holds the peers' secrets, so it belongs where firmware keeps secrets.
Give the stored bytes back as `saved` at boot. Sender Sequence Numbers are
reserved in blocks (RFC 8613 B.1.1) and replay windows restart above the
last saved number; call checkpoint() after traffic so that reservations are
renewed in time (a context out of reserved numbers refuses to send rather
than reuse a nonce). Portable, no I/O.
"""
from .compat import const
from . import cbor
from . import model
from .ccm import Ccm, AuthenticationError
from .errors import SpotError
from .hkdf import hkdf_extract, hkdf_expand
from .oscore import SecurityContext
from .roster import POLICY, OWNER, INSTALLER
from .services import SECURITY

ADD_PEER = const(1)
REMOVE_PEER = const(2)
PEERS = const(3)
MAX_PEERS = const(4)
SEQ = const(5)
# core.model's types and access rights, copied: the table is a constant (in flash when
# frozen) and a board never imports core/model_numbers for them
_ENUM = const(3)
_COUNTER = const(4)
_MAP = const(11)
_R = const(1)
_X = const(4)
_M = const(1)
# core/frame_numbers' numbers, copied: no global slot holds them on a board
_READ = const(1)
_SUBSCRIBE = const(4)
_UNSUBSCRIBE = const(5)
# core.errors' codes, copied
_OUT_OF_RANGE = const(4)
_WRONG_TYPE = const(5)
_NOT_AUTHORISED = const(6)
_BUSY = const(8)
_MALFORMED = const(9)

NAME = "security"
VERSION = (1, 0)
OBJECTS = (
    # id, name, type, unit, access, mandatory, lo, hi, scale
    (ADD_PEER, "add_peer", _MAP, "", _X, _M, None, None, 0),
    (REMOVE_PEER, "remove_peer", _MAP, "", _X, _M, None, None, 0),
    (PEERS, "peers", _MAP, "", _R, _M, None, None, 0),
    (MAX_PEERS, "max_peers", _ENUM, "", _R, _M, 0, 255, 0),
    (SEQ, "seq", _COUNTER, "", _R, _M, None, None, 0),
)

# keys of the add_peer / remove_peer argument
K_SEQ = const(0)
K_KID = const(1)
K_ROLE = const(2)
K_NONCE = const(3)
K_BOX = const(4)

WRAP_INFO = b"SPOT pairing key wrap 1"
KEY_LEN = const(16)
NONCE_LEN = const(13)
TAG_LEN = const(8)
MAX_ID = const(7)          # OSCORE ids with AES-CCM-16-64-128
MIN_SECRET = const(16)
MAX_SECRET = const(64)
MAX_SALT = const(64)

_READS = (_READ, _SUBSCRIBE, _UNSUBSCRIBE)


def wrap_key(master_secret, master_salt=b""):
    """The device's key-wrap key from its provisioning master secret and salt."""
    return hkdf_expand(hkdf_extract(bytes(master_salt), bytes(master_secret)),
                       WRAP_INFO, KEY_LEN)


def _aad(oid, seq, kid, role):
    return cbor.dumps([oid, seq, kid, role])


def seal_add(key, seq, kid, role, secret, salt, sender_id, nonce):
    """The add_peer argument (the bridge side). nonce: 13 fresh random bytes."""
    box = Ccm(key, TAG_LEN, 15 - NONCE_LEN).encrypt(
        nonce, cbor.dumps([bytes(secret), bytes(salt), bytes(sender_id)]),
        _aad(ADD_PEER, seq, bytes(kid), role))
    return {K_SEQ: seq, K_KID: bytes(kid), K_ROLE: role, K_NONCE: bytes(nonce), K_BOX: box}


def seal_remove(key, seq, kid, nonce):
    """The remove_peer argument (the bridge side). nonce: 13 fresh random bytes."""
    box = Ccm(key, TAG_LEN, 15 - NONCE_LEN).encrypt(
        nonce, b"", _aad(REMOVE_PEER, seq, bytes(kid), None))
    return {K_SEQ: seq, K_KID: bytes(kid), K_NONCE: bytes(nonce), K_BOX: box}


def _uint(v):
    return type(v) is int and v >= 0


def _id_ok(v):
    return type(v) is bytes and len(v) <= MAX_ID


class DevicePairing:
    """The security service of a node: roster + OSCORE contexts, kept together.

    node: core.node.Node; layer: the OSCORE layer (its `contexts` list is
    changed in place); roster: core.roster.Roster (its max_peers bounds the
    peers, the bridge included); bridge_kid: the bridge's Recipient ID in the
    device's provisioning context; key: wrap_key() of the provisioning secret.
    save: callable(bytes) storing the record; saved: the record stored before.
    reserve: Sender Sequence Numbers reserved per context and save.
    """

    def __init__(self, node, layer, roster, bridge_kid, key, save=None, saved=None,
                 reserve=32):
        self.node = node
        self.contexts = layer.contexts
        self.roster = roster
        self.bridge_kid = bytes(bridge_kid)
        self.save = save
        self.reserve = reserve
        self.seq = 0
        self.peers = {}      # kid -> [role, secret, salt, sender id, SecurityContext]
        self._saved_rx = {}  # kid -> highest request number seen at the last save
        self._ccm = Ccm(key, TAG_LEN, 15 - NONCE_LEN)
        roster.pair(self.bridge_kid, OWNER)
        node.services[SECURITY] = model.Service(SECURITY, NAME, VERSION, OBJECTS)
        node.values[SECURITY] = {}
        node.bind(SECURITY, ADD_PEER, set=self._add)
        node.bind(SECURITY, REMOVE_PEER, set=self._remove)
        node.set(SECURITY, MAX_PEERS, roster.max_peers)
        node.authorise = self.authorise
        if saved:
            self._restore(saved)
        self._publish()

    # ---- access control ----------------------------------------------------------------

    def authorise(self, peer, op, sid):
        """node.authorise: the roster's policy; the security service is the bridge's."""
        if sid != SECURITY:
            return self.roster.authorise(peer, op, sid)
        if peer == self.bridge_kid:
            return True
        return op in _READS and self.roster.role(peer) in (OWNER, INSTALLER)

    # ---- INVOKE handlers (node.bind setters; SpotError becomes the ERROR) ---------------

    def _fields(self, oid, arg, with_role):
        need = (K_SEQ, K_KID, K_ROLE, K_NONCE, K_BOX) if with_role else \
            (K_SEQ, K_KID, K_NONCE, K_BOX)
        for k in need:
            if k not in arg:
                raise SpotError(_MALFORMED, "argument key %d missing" % k)
        seq = arg[K_SEQ]
        kid = arg[K_KID]
        nonce = arg[K_NONCE]
        box = arg[K_BOX]
        role = arg[K_ROLE] if with_role else None
        if (not _uint(seq) or type(kid) is not bytes or type(nonce) is not bytes
                or type(box) is not bytes or (with_role and type(role) is not int)):
            raise SpotError(_WRONG_TYPE, oid)
        if len(kid) > MAX_ID or len(nonce) != NONCE_LEN or len(box) < TAG_LEN:
            raise SpotError(_OUT_OF_RANGE, oid)
        if with_role and role not in POLICY:
            raise SpotError(_OUT_OF_RANGE, "role")
        if kid == self.bridge_kid:
            raise SpotError(_OUT_OF_RANGE, "the bridge's kid")
        if seq <= self.seq:
            raise SpotError(_NOT_AUTHORISED, "stale seq")
        return seq, kid, role, nonce, box

    def _open(self, oid, seq, kid, role, nonce, box):
        try:
            return self._ccm.decrypt(nonce, box, _aad(oid, seq, kid, role))
        except AuthenticationError:
            raise SpotError(_NOT_AUTHORISED, "bad seal")

    def _add(self, arg):
        seq, kid, role, nonce, box = self._fields(ADD_PEER, arg, True)
        plain = self._open(ADD_PEER, seq, kid, role, nonce, box)
        try:
            cred = cbor.loads(plain)
        except cbor.CBORError:
            raise SpotError(_MALFORMED, "credential")
        if type(cred) is not list or len(cred) < 3:
            raise SpotError(_MALFORMED, "credential")
        secret, salt, sender_id = cred[0], cred[1], cred[2]
        if type(secret) is not bytes or type(salt) is not bytes or type(sender_id) is not bytes:
            raise SpotError(_WRONG_TYPE, "credential")
        if (not MIN_SECRET <= len(secret) <= MAX_SECRET or len(salt) > MAX_SALT
                or not _id_ok(sender_id) or sender_id == kid):
            raise SpotError(_OUT_OF_RANGE, "credential")
        roles = self.roster.roles
        if kid not in roles and len(roles) >= self.roster.max_peers:
            raise SpotError(_BUSY, "roster full")
        ctx = SecurityContext(secret, sender_id, kid, salt, persisted_seq=0)
        peers = dict(self.peers)
        peers[kid] = [role, secret, salt, sender_id, ctx]
        self._commit(seq, peers)
        replaced = self._drop_context(kid)
        self.contexts.append(ctx)
        self.roster.pair(kid, role)
        if replaced:   # new keys: observations made under the old ones end
            self.node.subs.drop_peer(kid)
        self._publish()

    def _remove(self, arg):
        seq, kid, _, nonce, box = self._fields(REMOVE_PEER, arg, False)
        if self._open(REMOVE_PEER, seq, kid, None, nonce, box):
            raise SpotError(_MALFORMED, "remove_peer seals nothing")
        peers = dict(self.peers)
        peers.pop(kid, None)
        self._commit(seq, peers)
        self._drop_context(kid)
        self.roster.unpair(kid)
        self.node.subs.drop_peer(kid)
        self._publish()

    def _drop_context(self, kid):
        n = len(self.contexts)
        self.contexts[:] = [c for c in self.contexts if c.recipient_id != kid]
        return len(self.contexts) != n

    # ---- persistence ---------------------------------------------------------------------

    def _commit(self, seq, peers):
        """Store the record of (seq, peers), reserving numbers; then adopt it.
        Raises SpotError(BUSY) if the store failed (nothing adopted)."""
        floors = {}
        recs = []
        for kid in sorted(peers):
            p = peers[kid]
            ctx = p[4]
            floors[kid] = ctx.reserve_sender_seq(self.reserve)
            recs.append([kid, p[0], p[1], p[2], p[3], floors[kid], ctx.window.highest])
        if self.save is not None:
            try:
                self.save(cbor.dumps({0: seq, 1: recs}))
            except OSError:
                raise SpotError(_BUSY, "store failed")
        saved_rx = {}
        for kid in floors:
            ctx = peers[kid][4]
            ctx.confirm_sender_seq(floors[kid])
            saved_rx[kid] = ctx.window.highest
        self.seq = seq
        self.peers = peers
        self._saved_rx = saved_rx

    def checkpoint(self):
        """Save again if a context is running short of reserved numbers or its
        replay window moved on by half a reservation; True if it saved."""
        half = self.reserve // 2
        for kid in self.peers:
            ctx = self.peers[kid][4]
            left = ctx.sender_seq_remaining()
            if ((left is not None and left < half)
                    or ctx.window.highest - self._saved_rx.get(kid, -1) >= half):
                try:
                    self._commit(self.seq, dict(self.peers))
                except SpotError:
                    return False
                return True
        return False

    def _restore(self, saved):
        """Load a record stored by save(); raises ValueError if it is not one."""
        try:
            rec = cbor.loads(saved)
        except cbor.CBORError:
            raise ValueError("pairing record is not CBOR")
        if type(rec) is not dict or not _uint(rec.get(0)) or type(rec.get(1)) is not list:
            raise ValueError("pairing record malformed")
        peers = {}
        for r in rec[1]:
            if (type(r) is not list or len(r) < 7 or not _id_ok(r[0]) or r[1] not in POLICY
                    or type(r[2]) is not bytes or type(r[3]) is not bytes
                    or not _id_ok(r[4]) or not _uint(r[5]) or type(r[6]) is not int
                    or r[0] == self.bridge_kid):
                raise ValueError("pairing record malformed")
            ctx = SecurityContext(r[2], r[4], r[0], r[3], persisted_seq=r[5])
            if r[6] >= 0:
                ctx.window.reject_up_to(r[6])
            peers[r[0]] = [r[1], r[2], r[3], r[4], ctx]
        if len(peers) + 1 > self.roster.max_peers:
            raise ValueError("pairing record larger than the roster")
        for kid in peers:
            self._drop_context(kid)
            self.contexts.append(peers[kid][4])
            self.roster.pair(kid, peers[kid][0])
        self.seq = rec[0]
        self.peers = peers
        try:
            self._commit(self.seq, dict(peers))   # fresh reservations
        except SpotError:
            pass   # contexts stay without numbers to send: safe, retried by checkpoint()

    def _publish(self):
        roles = self.roster.roles
        table = {}
        for kid in roles:
            if type(kid) is bytes:
                table[kid] = roles[kid]
        self.node.set(SECURITY, PEERS, table)
        self.node.set(SECURITY, SEQ, self.seq)
