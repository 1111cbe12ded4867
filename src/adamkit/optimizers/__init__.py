"""One module per named optimizer; importing this package registers them all."""

from adamkit.optimizers.adabelief import AdaBelief
from adamkit.optimizers.adam import Adam, AdamW
from adamkit.optimizers.adam_awd import AdamAWD
from adamkit.optimizers.adam_gc import AdamGC
from adamkit.optimizers.adam_mini import AdamMini
from adamkit.optimizers.adamw_mini_sf import AdamWMiniSF, RefAdamWMiniSF
from adamkit.optimizers.ademamix import AdEMAMix
from adamkit.optimizers.b_adam import BAdam
from adamkit.optimizers.duv_adam import DuvAdam
from adamkit.optimizers.lamb import LAMB
from adamkit.optimizers.pre_lamb import PreLAMB
from adamkit.optimizers.radam import RAdam
from adamkit.optimizers.sadam import SAdam, SRAdam
from adamkit.optimizers.schedulefree import AdamWScheduleFree
from adamkit.optimizers.stable_adam import StableAdam
from adamkit.optimizers.su_adam import SUAdam
from adamkit.optimizers.um import UM

__all__ = [
    "LAMB",
    "UM",
    "AdEMAMix",
    "AdaBelief",
    "Adam",
    "AdamAWD",
    "AdamGC",
    "AdamMini",
    "AdamW",
    "AdamWMiniSF",
    "AdamWScheduleFree",
    "BAdam",
    "DuvAdam",
    "PreLAMB",
    "RAdam",
    "RefAdamWMiniSF",
    "SAdam",
    "SRAdam",
    "SUAdam",
    "StableAdam",
]
