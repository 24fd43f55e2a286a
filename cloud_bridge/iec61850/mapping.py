"""Where each SPOT profile object lives in the IEC 61850 model: data, no code.

LN_CLASSES: {LN class: (description, where it is defined)}; "local" marks a
SPOT extension (namespace LOCAL_NS), everything else is a standard class.
OBJECTS: {service id: {object id: "LN.DO[.sub]:CDC[*]"}}. LN is a class
name, optionally with "#n" when a profile needs a second instance of it
(STMP#2); "*" marks a data object that is a SPOT extension of a standard
LN; ".sub" is a sub data object (WYE phases) or a DPL attribute. Objects a
profile has but this table leaves out (schedules, curves) are not in the
model: UNMAPPED_TYPES says why. The electrical rows 1-5 of every device
profile are added from ELECTRICAL.
"""
from ...core import services as S
from ...core import model as M

LOCAL_NS = "SPOT:2026"   # the namespace of local extensions (ldNs / dataNs / lnNs)

LN_CLASSES = {
    "LLN0": ("logical node zero", "IEC 61850-7-4"),
    "LPHD": ("physical device information", "IEC 61850-7-4"),
    "MMXU": ("measurement (electrical)", "IEC 61850-7-4"),
    "MMTR": ("metering (energy)", "IEC 61850-7-4"),
    "MMDC": ("DC measurement", "IEC 61850-7-4"),
    "MMET": ("meteorological information", "IEC 61850-7-4"),
    "MSTA": ("metering statistics", "IEC 61850-7-4"),
    "STMP": ("temperature supervision", "IEC 61850-7-4"),
    "XCBR": ("circuit breaker (connection to the grid)", "IEC 61850-7-4"),
    "CALH": ("alarm handling", "IEC 61850-7-4"),
    "DRCC": ("DER supervisory control", "IEC 61850-7-420"),
    "DRCT": ("DER controller characteristics", "IEC 61850-7-420"),
    "DRAT": ("DER ratings", "IEC 61850-7-420"),
    "DGEN": ("DER generator unit", "IEC 61850-7-420"),
    "DWMX": ("DER maximum active power limit function", "IEC 61850-7-420"),
    "DFPF": ("DER fixed power factor function", "IEC 61850-7-420"),
    "DVAR": ("DER reactive power function", "IEC 61850-7-420"),
    "ZINV": ("inverter", "IEC 61850-7-420"),
    "ZBAT": ("battery", "IEC 61850-7-420"),
    "ZBTC": ("battery charger", "IEC 61850-7-420"),
    "MFUL": ("fuel characteristics", "IEC 61850-7-420"),
    "FSCH": ("schedule (-> a SPOT plan)", "IEC 61850-7-4"),
    "DESE": ("EV supply equipment", "IEC 61850-90-8"),
    "DEEV": ("electric vehicle", "IEC 61850-90-8"),
    "ZHPU": ("heat pump unit (SG-Ready, set-points)", "local"),
    "ZEMS": ("site energy manager", "local"),
    "ZGRD": ("grid state as a device sees it", "local"),
    "ZPRC": ("energy price", "local"),
}

UNMAPPED_TYPES = {
    M.SCHEDULE: "schedules: FSCH is not built yet",
    M.CURVE: "curves: 61850-90-7 FMAR curves are not built yet",
    M.PLAN: "plans: FSCH is not built yet",
    M.MAP: "maps: no 61850 counterpart",
}

ELECTRICAL = {1: "MMXU.TotW:MV", 2: "MMXU.TotVAr:MV", 3: "MMXU.AvPhVPhs:MV",
              4: "MMXU.AvAPhs:MV", 5: "MMXU.Hz:MV"}

OBJECTS = {
    S.DEVICE_INFO: {1: "LPHD.PhyNam.vendor:DPL", 2: "LPHD.PhyNam.model:DPL",
                    3: "LPHD.PhyNam.serNum:DPL", 4: "LPHD.PhyNam.swRev:DPL",
                    5: "LPHD.DevCls:INS*", 6: "DRAT.WRtg:ASG", 7: "LPHD.PhyNam.hwRev:DPL",
                    8: "LPHD.NumPhs:INS*", 9: "DRAT.VRtg:ASG",
                    10: "LPHD.PhyNam.location:DPL"},
    S.ALARMS: {1: "CALH.GrAlm:SPS", 2: "CALH.AlmCnt:INS*", 3: "CALH.EvtCnt:BCR*",
               4: "CALH.AlmAck:INC*", 5: "CALH.LstEvCod:INS*"},
    S.DIAGNOSTICS: {1: "LPHD.WrmStr:INS", 2: "LPHD.RsCause:INS*", 3: "LPHD.MemErr:INS*"},
    S.PRICE: {2: "ZPRC.Cur:VSS", 3: "ZPRC.PrcNow:MV"},
    S.WEATHER: {3: "MMET.EnvTmp:MV", 4: "MMET.HorInsol:MV", 6: "MMET.HorWdSpd:MV"},
    S.GRID: {1: "ZGRD.GridSt:INS", 2: "ZGRD.Emg:SPS", 3: "ZGRD.DrLev:INS",
             4: "ZGRD.StUntil:INS"},
    S.HEAT_PUMP: {6: "ZHPU.SgRdy:INC", 7: "ZHPU.FlwTmpSpt:ASG", 8: "STMP.Tmp:MV",
                  9: "ZHPU.DhwTmpSpt:ASG", 10: "STMP#2.Tmp:MV", 11: "MMET.EnvTmp:MV",
                  12: "STMP#3.Tmp:MV", 13: "ZHPU.RmTmpSpt:ASG", 14: "MMXU#2.TotW:MV",
                  15: "ZHPU.HtW:MV", 16: "ZHPU.Cop:MV", 17: "DRCC.OutWSet:APC",
                  18: "ZHPU.Pause:APC", 19: "ZHPU.StrDl:APC", 20: "ZHPU.DefWh:MV",
                  21: "MMTR.DmdWh:BCR", 22: "ZHPU.HtWh:BCR", 23: "ZHPU.OpSt:INS"},
    S.PV_INVERTER: {6: "DWMX.WMaxSptPct:APC", 7: "XCBR.Pos:DPC", 8: "ZINV.InvSt:INS*",
                    9: "MMTR.SupWh:BCR", 10: "ZINV.WAvl:MV*", 11: "MMDC.Watt:MV",
                    12: "MMET.DctInsol:MV", 13: "DWMX.WMaxSpt:APC", 14: "DFPF.PFGnTgtSpt:ASG",
                    15: "DVAR.VArMod:INC*", 16: "DVAR.VArTgtSpt:APC*", 19: "ZINV.FWEna:SPC*",
                    20: "DRCT.RmpRte:ASG*", 21: "DRCC.DERStop:SPC", 22: "MMTR.DmdWh:BCR",
                    23: "ZINV.HeatSinkTmp:MV", 24: "DRAT.WRtg:ASG", 25: "MMDC.Vol:MV"},
    S.BATTERY: {6: "ZBAT.SocPct:MV*", 7: "DRCC.OutWSet:APC", 8: "ZBTC.BatMod:INC*",
                9: "ZBAT.WhRtg:ASG*", 10: "ZBTC.ChaWLim:ASG*", 11: "ZBTC.DschWLim:ASG*",
                12: "ZBTC.BatChaSt:INS", 13: "STMP.Tmp:MV", 14: "ZBAT.SohPct:MV*",
                15: "MMTR.DmdWh:BCR", 16: "MMTR.SupWh:BCR", 17: "ZBAT.NumCyc:BCR*",
                18: "ZBAT.SocMinPct:ASG*", 19: "ZBAT.SocMaxPct:ASG*", 20: "DRCC.OutVarSet:APC",
                21: "ZBTC.ChaWMax:MV*", 22: "ZBTC.DschWMax:MV*", 23: "ZBAT.WhAvl:MV*",
                24: "ZBAT.WhNom:ASG*"},
    S.EV_CHARGER: {6: "DESE.SessSt:INS*", 7: "DESE.ConnSt:INS*", 8: "DESE.ALim:APC*",
                   9: "DESE.ChaEna:SPC*", 10: "DEEV.SessWh:MV*", 11: "DEEV.AMin:MV*",
                   12: "DEEV.AMax:MV*", 13: "DEEV.WhReq:ASG*", 14: "DEEV.DptTm:ING*",
                   15: "DEEV.SocPct:MV*", 16: "DEEV.V2GCap:SPS*", 17: "MMTR.DmdWh:BCR",
                   18: "MMTR.SupWh:BCR", 19: "DESE.NumPhs:INS*", 20: "DRCC.OutWSet:APC",
                   21: "DESE.SessStrTm:INS*"},
    S.METER: {6: "MMTR.DmdWh:BCR", 7: "MMTR.SupWh:BCR",
              8: "MMXU.W.phsA:CMV", 9: "MMXU.W.phsB:CMV", 10: "MMXU.W.phsC:CMV",
              11: "MMXU.VAr.phsA:CMV", 12: "MMXU.VAr.phsB:CMV", 13: "MMXU.VAr.phsC:CMV",
              14: "MMXU.PhV.phsA:CMV", 15: "MMXU.PhV.phsB:CMV", 16: "MMXU.PhV.phsC:CMV",
              17: "MMXU.A.phsA:CMV", 18: "MMXU.A.phsB:CMV", 19: "MMXU.A.phsC:CMV",
              20: "MMXU.TotPF:MV", 21: "MMTR.TrfNum:INS*", 22: "CALH.GrAlm:SPS",
              23: "XCBR.Pos:DPC", 24: "MMTR.TrfNam:VSS*", 25: "MSTA.AvW:MV"},
    S.GENERATOR: {6: "DRCC.OutWSet:APC", 7: "DRCC.OutVarSet:APC", 8: "DRCC.WAvl:MV*",
                  9: "DRCC.WOvl:MV*", 10: "DGEN.GnOpSt:INS", 11: "DRCC.DERStr:SPC",
                  12: "DRCC.DERStop:SPC", 13: "MMTR.SupWh:BCR", 14: "DRCC.WSpnRsv:MV*",
                  15: "DRCT.RmpRte:ASG*", 16: "DRAT.WMin:ASG*", 17: "MFUL.FuLev:MV*",
                  18: "STMP.Tmp:MV", 19: "DGEN.OpTmsRs:INS", 20: "DRAT.WRtg:ASG"},
    S.ENERGY_MANAGER: {6: "ZEMS.NumRes:MV", 7: "ZEMS.LodW:MV", 8: "ZEMS.GnW:MV",
                       9: "ZEMS.DefW:MV", 10: "ZEMS.DefWh:MV", 11: "DRCC.OutWSet:APC",
                       12: "DWMX.WMaxSpt:APC", 13: "ZEMS.RedPct:APC", 14: "ZEMS.EmsMod:INC",
                       15: "MMTR.DmdWh:BCR", 16: "MMTR.SupWh:BCR", 17: "ZEMS.BstW:MV",
                       18: "ZEMS.StoSocPct:MV", 19: "ZEMS.StoWh:MV"},
}

# the set-point an FSCH schedule drives (a SPOT plan of that object), per profile
SCHEDULE_TARGETS = {S.BATTERY: 7, S.GENERATOR: 6, S.EV_CHARGER: 20, S.ENERGY_MANAGER: 11,
                    S.PV_INVERTER: 13, S.HEAT_PUMP: 17}
SCHEDULE_ENTRIES = 8     # ValASG001..ValASG008

DEVICE_PROFILES = (S.HEAT_PUMP, S.PV_INVERTER, S.BATTERY, S.EV_CHARGER, S.METER,
                   S.GENERATOR, S.ENERGY_MANAGER)


def entries(sid):
    """{object id: (ln key, DO, sub or None, CDC, local DO?)} of a service (empty if unknown)."""
    table = dict(OBJECTS.get(sid, {}))
    if sid in DEVICE_PROFILES:
        for oid, ref in ELECTRICAL.items():
            table.setdefault(oid, ref)
    out = {}
    for oid, ref in table.items():
        path, cdc = ref.split(":")
        local = cdc.endswith("*")
        parts = path.split(".")
        out[oid] = (parts[0], parts[1], parts[2] if len(parts) > 2 else None,
                    cdc.rstrip("*"), local)
    return out
