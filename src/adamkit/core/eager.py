"""The eager path of a group: small tensors merged, the rest one by one.

Each eager operation costs a few microseconds of dispatch whatever its size, so a rule of ten
operations costs tens of microseconds per tensor; on many small tensors that is most of a step.
As on the compiled path, small tensors of one signature whose rule allows it (element-wise, or
coupled only through per-tensor reductions, then run per segment) are merged
(:class:`adamkit.core.compiled.Merged`): their state lives in flat buffers, and one call of
:func:`adamkit.core.execute.update_one` updates them all. Element-wise rules on merged buffers
give the per-tensor results bit for bit; segmented reductions sum in another order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adamkit.core.compiled import Merged, bucket_merge, by_signature, split_small
from adamkit.core.execute import Plan


class EagerArrangement:
    """A set of plans arranged for the eager path: merged calls, and the plans stepped alone."""

    def __init__(self, opt: Any, plans: list[Plan]) -> None:
        buckets, self.alone = by_signature(plans)
        self.merged: list[Merged] = []
        for bucket in buckets:
            merge = bucket_merge(opt, bucket)
            groups, rest = split_small(bucket, merge)
            self.merged += [Merged(group, [], merge == "segmented") for group in groups]
            self.alone += rest


class EagerPath:
    """The eager counterpart of :class:`adamkit.core.compiled.CompiledPath`."""

    @staticmethod
    def arrange(opt: Any, plans: list[Plan], hyper: Any) -> EagerArrangement:
        return EagerArrangement(opt, plans)

    @staticmethod
    def run(opt: Any, work: EagerArrangement, k: Mapping[str, Any]) -> list[Plan]:
        """Step the merged calls; return the plans left to step one by one."""
        for call in work.merged:
            call.step_eagerly(opt.rule, k)
        return work.alone
