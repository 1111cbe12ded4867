"""Independent float64 reference implementations of the adamkit optimizers (SPEC.md).

Each class takes ``(params: list[Tensor], **hparams)`` and has ``step(grads)`` that updates
the float64 ``params`` in place; a ``None`` gradient skips that parameter for the step.
``REFERENCES`` maps the registry names to the classes.
"""

from .adabelief import AdaBeliefRef
from .adam import AdamRef, AdamWRef
from .adam_gc import AdamGCRef
from .adam_mini import AdamMiniRef
from .ademamix import AdEMAMixRef
from .lamb import LAMBRef
from .radam import RAdamRef
from .ref import AdamWMiniSFRef, RefAdamWMiniSFRef, RefOriginal
from .research import AdamAWDRef, BAdamRef, DuvAdamRef, PreLAMBRef, StableAdamRef, SUAdamRef, UMRef
from .schedulefree import AdamWScheduleFreeRef
from .softplus_adam import SAdamRef, SRAdamRef

REFERENCES = {
    "adam": AdamRef,
    "adamw": AdamWRef,
    "radam": RAdamRef,
    "adabelief": AdaBeliefRef,
    "ademamix": AdEMAMixRef,
    "lamb": LAMBRef,
    "sadam": SAdamRef,
    "sradam": SRAdamRef,
    "adam_gc": AdamGCRef,
    "adamw_schedulefree": AdamWScheduleFreeRef,
    "adam_mini": AdamMiniRef,
    "stable_adam": StableAdamRef,
    "adam_awd": AdamAWDRef,
    "um": UMRef,
    "pre_lamb": PreLAMBRef,
    "duv_adam": DuvAdamRef,
    "su_adam": SUAdamRef,
    "b_adam": BAdamRef,
    "adamw_mini_sf": AdamWMiniSFRef,
    "ref_adamw_mini_sf": RefAdamWMiniSFRef,
}

__all__ = [
    "REFERENCES",
    "AdEMAMixRef",
    "AdaBeliefRef",
    "AdamAWDRef",
    "AdamGCRef",
    "AdamMiniRef",
    "AdamRef",
    "AdamWMiniSFRef",
    "AdamWRef",
    "AdamWScheduleFreeRef",
    "BAdamRef",
    "DuvAdamRef",
    "LAMBRef",
    "PreLAMBRef",
    "RAdamRef",
    "RefAdamWMiniSFRef",
    "RefOriginal",
    "SAdamRef",
    "SRAdamRef",
    "SUAdamRef",
    "StableAdamRef",
    "UMRef",
]
