"""Who owns the subscriptions the bridge holds on devices, and how many each may hold.

Every actor's SUBSCRIBE reaches a device from one peer, the bridge, so the
device cannot tell one actor's subscription from another's: an UNSUBSCRIBE
without an id would end all of them, and any actor could fill the device's
subscription slots (spec section 6: 8 by default). The bridge therefore keeps
the book: each subscription (device, service, id) has an owning actor.

- An actor ends only its own subscriptions; a manager of the device (owner or
  installer role, the operator) may end anyone's, to free a slot.
- An UNSUBSCRIBE without an id is refused while another actor holds a
  subscription in that service of the device (name the subscription instead).
- Quotas: an actor that does not manage the device holds at most PER_ACTOR
  subscriptions on it, and all such actors together at most
  DEVICE_SLOTS - MANAGER_RESERVE, so the device's managers always find
  MANAGER_RESERVE slots free of other actors' subscriptions.

Subscriptions being sent count against the quota as soon as they are queued.
The book lives in memory: after a restart the bridge knows no subscription
(CoAP observations end with the process; MQTT ones are forgotten, and a
device manager can end them by id).
"""
DEVICE_SLOTS = 8        # a node's subscriptions (spec section 6 default)
MANAGER_RESERVE = 4     # slots other actors' subscriptions never take
PER_ACTOR = 2           # subscriptions per device of an actor that does not manage it


class SubscriptionBook:
    """(device, service, id) -> actor for live subscriptions, and the ones queued."""

    def __init__(self, slots=DEVICE_SLOTS, reserve=MANAGER_RESERVE, per_actor=PER_ACTOR):
        self.slots = slots
        self.reserve = reserve
        self.per_actor = per_actor
        self.live = {}      # device -> {(sid, mid): (actor, manager)}
        self.queued = {}    # command id -> (device, actor, manager)

    def _entries(self, device):
        """(actor, manager) of every subscription on device, live or queued."""
        out = list(self.live.get(device, {}).values())
        out.extend(e[1:] for e in self.queued.values() if e[0] == device)
        return out

    def admit(self, device, actor, manager):
        """None if actor may add a subscription on device, else why not.
        manager: the actor manages the device (its needs come first)."""
        if manager:
            return None
        held = self._entries(device)
        if sum(1 for a, _ in held if a == actor) >= self.per_actor:
            return ("%s already holds %d subscriptions on %s, the most an actor that does "
                    "not manage it may hold" % (actor, self.per_actor, device))
        shared = self.slots - self.reserve
        if sum(1 for _, m in held if not m) >= shared:
            return ("the %d subscription slots of %s open to other actors are taken "
                    "(%d are kept for its managers)" % (shared, device, self.reserve))
        return None

    def check_unsubscribe(self, device, actor, sid, mid, manager):
        """None if actor may end subscription mid (None: all of the bridge's in
        service sid) on device, else why not."""
        if manager:
            return None
        mine = self.live.get(device, {})
        if mid is None:
            if any(s == sid and owner[0] != actor for (s, _), owner in mine.items()):
                return ("other actors hold subscriptions in this service of %s: "
                        "unsubscribe by subscription id" % device)
            return None
        if mine.get((sid, mid), (None,))[0] != actor:
            return "subscription %d on %s is not %s's" % (mid, device, actor)
        return None

    def queue(self, command_id, device, actor, manager):
        self.queued[command_id] = (device, actor, manager)

    def settled(self, command_id, sid=None, mid=None):
        """A queued SUBSCRIBE ended: live under mid when given, else gone."""
        entry = self.queued.pop(command_id, None)
        if entry is not None and mid is not None:
            self.live.setdefault(entry[0], {})[(sid, mid)] = entry[1:]

    def ended(self, device, sid, mid=None):
        """Subscription mid (None: every one in service sid) on device ended."""
        subs = self.live.get(device, {})
        for key in [k for k in subs if k[0] == sid and (mid is None or k[1] == mid)]:
            del subs[key]
        if not subs:
            self.live.pop(device, None)

    def of(self, device):
        """[(sid, mid, actor)] of the device's live subscriptions."""
        return sorted((s, m, a[0]) for (s, m), a in self.live.get(device, {}).items())
