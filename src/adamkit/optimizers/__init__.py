"""One module per named optimizer; importing this package registers them all."""

from adamkit.optimizers.adabelief import AdaBelief
from adamkit.optimizers.adam import Adam, AdamW
from adamkit.optimizers.adam_gc import AdamGC
from adamkit.optimizers.ademamix import AdEMAMix
from adamkit.optimizers.lamb import LAMB
from adamkit.optimizers.radam import RAdam
from adamkit.optimizers.sadam import SAdam, SRAdam
from adamkit.optimizers.schedulefree import AdamWScheduleFree

__all__ = [
    "LAMB",
    "AdEMAMix",
    "AdaBelief",
    "Adam",
    "AdamGC",
    "AdamW",
    "AdamWScheduleFree",
    "RAdam",
    "SAdam",
    "SRAdam",
]
