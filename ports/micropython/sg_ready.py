"""A heat pump's two SG-Ready relay outputs as one setter (hw.SgReady: bound to the
profile's sg_ready object with hw.bind, this module loaded at its first use)."""

# SG-Ready state 1 blocked, 2 normal, 3 recommended, 4 forced on: relay 1 + 2 * relay 2
SG_RELAYS = (1, 0, 2, 3)


class SgReady:
    """The two SG-Ready relay outputs of a heat pump as one setter (and getter).
    The state is an integer either way, so it binds with or without wire=True."""

    def __init__(self, relay1, relay2):
        self.relay1 = relay1
        self.relay2 = relay2

    def __call__(self, state=None):
        if state is None:     # used as a getter: the state the relays show
            return SG_RELAYS.index(self.relay1.value() + 2 * self.relay2.value()) + 1
        bits = SG_RELAYS[int(state) - 1]
        self.relay1.value(bits & 1)
        self.relay2.value(bits >> 1)
