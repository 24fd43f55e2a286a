"""Pairing on the bridge: device credentials, controller credentials, provisioning.

    keyring = Keyring("spot-data/keys")
    device_half = keyring.commission("hp-1")      # flashed onto the device once
    pairing = PairingService(bridge, keyring)
    issued = await pairing.pair("operator", "hp-1", "phone", "aggregator")
    issued["oscore"]   # the controller's half, handed out once (aiocoap settings.json)
    await pairing.unpair("operator", "hp-1", "phone")
    link = CoapLink(bridge, host, port, keyring=keyring)   # the CoAP link speaks OSCORE

Keyring keeps, per device, the OSCORE context the device shares with the bridge
(commissioning: master secret, salt, the bridge's id 00 and the device's, unique in
the keyring because the bridge finds a device's context by it: 01, 02, ...) as an
aiocoap FilesystemSecurityContext directory (sequence numbers persisted by
aiocoap), plus the provisioning number. Files are created owner-only.

PairingService.pair() checks the actor through Bridge.pair (owner or installer),
draws a fresh master secret, salt and kid for (device, controller), stores only
the reference "oscore:<kid hex>" in the pairing row, and queues INVOKE
security.add_peer for the device (core.pairing): the secret is sealed under the
device's wrap key, so the command queue, the audit log and the API only ever
hold the sealed box, and the link adds OSCORE on top. The controller's half is
returned to the caller and not kept. unpair() queues security.remove_peer.

A CoapLink built with the keyring (cloud_bridge.coap_link) speaks OSCORE with
commissioned devices in their provisioning contexts (Keyring.credentials) and
accepts a commissioned device id only from that device's own context.
"""
import json
import os
import tempfile
import time

from aiocoap.credentials import CredentialsMap
from aiocoap.oscore import FilesystemSecurityContext

from ..core import frame as F
from ..core import pairing as CP
from ..core.roster import ROLE_NAMES
from ..core.services import SECURITY
from .service import BadRequest

ROLE_IDS = {name: rid for rid, name in ROLE_NAMES.items()}
REF_PREFIX = "oscore:"
BRIDGE_KID = b"\x00"     # the bridge's Sender ID in every device's provisioning context
DEVICE_KID = b"\x01"     # the device's Sender ID towards its paired controllers
KID_LEN = 2              # controller kids: random, unique per device
SECRET_LEN = 32
SALT_LEN = 8
_NONCE_LEN = 13


def _write_private(path, data):
    """Write bytes to path atomically, readable by the owner only."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def kid_of(reference):
    """The kid in a pairing row's credential reference, or None."""
    if not isinstance(reference, str) or not reference.startswith(REF_PREFIX):
        return None
    try:
        return bytes.fromhex(reference[len(REF_PREFIX):])
    except ValueError:
        return None


class Keyring:
    """Per-device provisioning credentials in a directory (one folder per device).

    clock: for provisioning numbers (they also never go below milliseconds of
    Unix time, so a keyring restored from a backup still counts upwards).
    """

    def __init__(self, path, clock=time.time, random=os.urandom):
        self.path = os.path.abspath(path)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self.clock = clock
        self.random = random
        self.credentials = CredentialsMap()   # ':spot-device-<hex>' -> context
        self._contexts = {}                   # device -> FilesystemSecurityContext
        self._devices = {}                    # FilesystemSecurityContext -> device
        self._kids = set()                    # device Sender IDs in use
        for name in sorted(os.listdir(self.path)):
            try:
                device = bytes.fromhex(name).decode()
            except ValueError:
                continue
            if os.path.isfile(os.path.join(self.path, name, "secret.json")):
                self._load(device)

    def _dir(self, device):
        return os.path.join(self.path, device.encode().hex())

    def has(self, device):
        return device in self._contexts

    def devices(self):
        return sorted(self._contexts)

    def commission(self, device, secret=None, salt=None):
        """Create the device's provisioning context; the device's half as a dict
        (device, secret, salt, sender_id, recipient_id: what to store on the device;
        bytes values). The device's Sender ID is one no other device of the keyring
        has: the bridge picks a device's context by it. Refuses a device already
        commissioned (ValueError)."""
        if not isinstance(device, str) or not device:
            raise ValueError("device id must be a non-empty string")
        if self.has(device):
            raise ValueError("%s is already commissioned" % device)
        secret = self.random(SECRET_LEN) if secret is None else bytes(secret)
        salt = self.random(SALT_LEN) if salt is None else bytes(salt)
        kid = self._free_kid()
        d = self._dir(device)
        os.makedirs(d, mode=0o700)
        _write_private(os.path.join(d, "secret.json"), json.dumps({
            "secret_hex": secret.hex(), "salt_hex": salt.hex(),
            "sender-id_hex": BRIDGE_KID.hex(), "recipient-id_hex": kid.hex(),
        }).encode())
        _write_private(os.path.join(d, "pairing.json"), json.dumps({"seq": 0}).encode())
        self._load(device)
        return {"device": device, "secret": secret, "salt": salt,
                "sender_id": kid, "recipient_id": BRIDGE_KID}

    def _free_kid(self):
        n = len(self._kids) + 1
        while True:
            kid = n.to_bytes((n.bit_length() + 7) // 8, "big")
            if kid not in self._kids:
                return kid
            n += 1

    def _load(self, device):
        ctx = FilesystemSecurityContext(self._dir(device))
        self._contexts[device] = ctx
        self._devices[ctx] = device
        self._kids.add(ctx.recipient_id)
        self.credentials[":spot-device-" + device.encode().hex()] = ctx

    def context(self, device):
        """The bridge's aiocoap security context with the device (KeyError if none)."""
        return self._contexts[device]

    def device_of(self, security_context):
        """The device whose provisioning context this is, or None."""
        return self._devices.get(security_context)

    def _secret(self, device):
        with open(os.path.join(self._dir(device), "secret.json")) as f:
            data = json.load(f)
        return bytes.fromhex(data["secret_hex"]), bytes.fromhex(data.get("salt_hex", ""))

    def wrap_key(self, device):
        """The key that seals provisioning commands for the device (core.pairing)."""
        secret, salt = self._secret(device)
        return CP.wrap_key(secret, salt)

    def next_seq(self, device):
        """The next provisioning number for the device, stored before it is used."""
        self.context(device)
        path = os.path.join(self._dir(device), "pairing.json")
        with open(path) as f:
            seq = int(json.load(f)["seq"])
        seq = max(seq + 1, int(self.clock() * 1000))
        _write_private(path, json.dumps({"seq": seq}).encode())
        return seq

    def nonce(self):
        return self.random(_NONCE_LEN)

    def close(self):
        """Persist every context's numbers and replay window and release its lock.
        (aiocoap has no public close; after a crash instead, aiocoap recovers the
        replay window with Echo, RFC 9175, on each device's next request.)"""
        for device in list(self._contexts):
            ctx = self._contexts.pop(device)
            self._devices.pop(ctx, None)
            self._kids.discard(ctx.recipient_id)
            self.credentials.pop(":spot-device-" + device.encode().hex(), None)
            if ctx.lockfile is not None:
                ctx._destroy()


class PairingService:
    """Pair and unpair controllers with credentials, provisioning the device."""

    def __init__(self, bridge, keyring):
        self.bridge = bridge
        self.keyring = keyring

    async def _kid_for(self, device, controller):
        """The controller's kid: kept when it is paired already, else a fresh one."""
        used = {BRIDGE_KID, DEVICE_KID}
        for p in await self.bridge.store.pairings(device):
            kid = kid_of(p.credential)
            if kid is not None:
                if p.controller == controller:
                    return kid
                used.add(kid)
        for _ in range(64):
            kid = self.keyring.random(KID_LEN)
            if kid not in used:
                return kid
        raise BadRequest("no free kid for %s" % device)

    async def pair(self, actor, device, controller, role):
        """Pair controller with device in role; returns what the controller needs
        (given out once): {"device", "controller", "role", "kid", "command",
        "oscore": aiocoap settings (secret_hex, salt_hex, sender-id_hex,
        recipient-id_hex)}. Raises Forbidden, BadRequest, LookupError."""
        if role not in ROLE_IDS:
            raise BadRequest("role must be one of %s" % ", ".join(sorted(ROLE_IDS)))
        if not self.keyring.has(device):
            raise BadRequest("%s has no provisioning credentials (not commissioned)" % device)
        if device not in self.bridge.known:
            raise LookupError("unknown device %r" % device)
        kid = await self._kid_for(device, controller)
        await self.bridge.pair(actor, device, controller, role, REF_PREFIX + kid.hex())
        secret = self.keyring.random(SECRET_LEN)
        salt = self.keyring.random(SALT_LEN)
        arg = CP.seal_add(self.keyring.wrap_key(device), self.keyring.next_seq(device), kid,
                          ROLE_IDS[role], secret, salt, DEVICE_KID, self.keyring.nonce())
        cmd = await self.bridge.submit(actor, device, SECURITY, F.INVOKE, [CP.ADD_PEER, arg])
        return {"device": device, "controller": controller, "role": role, "kid": kid.hex(),
                "command": cmd.id,
                "oscore": {"secret_hex": secret.hex(), "salt_hex": salt.hex(),
                           "sender-id_hex": kid.hex(), "recipient-id_hex": DEVICE_KID.hex()}}

    async def unpair(self, actor, device, controller):
        """Unpair and queue the removal on the device; the Command, or None when the
        pairing carried no device credential. LookupError if it did not exist."""
        kid = None
        for p in await self.bridge.store.pairings(device):
            if p.controller == controller:
                kid = kid_of(p.credential)
        if not await self.bridge.unpair(actor, device, controller):
            raise LookupError("%s is not paired with %s" % (controller, device))
        if kid is None or not self.keyring.has(device):
            return None
        arg = CP.seal_remove(self.keyring.wrap_key(device), self.keyring.next_seq(device), kid,
                             self.keyring.nonce())
        # the actor may have unpaired itself: the bridge's operator carries the removal
        by = self.bridge.config.operator if actor == controller else actor
        return await self.bridge.submit(by, device, SECURITY, F.INVOKE, [CP.REMOVE_PEER, arg])
