"""The scalar arithmetic of a compiled step, computed once per call instead of once per vector.

A rule combines the step's numbers (0-d tensors) before it uses them on whole tensors:
SAdam's β/√(1 − β2^t) and its reciprocal, B_Adam's mean|θ|·η/(1 − β1^t) (a mean itself is
a stored sum divided by the size where it is read). Inductor inlines
such a 0-d expression into every loop that reads it, and the C++ compiler cannot hoist it out
of the loop (the scalars are loaded through a pointer that the loop's stores might alias), so
each vector of 16 elements recomputed several scalar divisions. :func:`hoist_scalars` is a
graph pass that marks each costly 0-d result read by a larger tensor with
:func:`computed_once`, whose lowering stores it in a buffer that the loops load. The values
are the same operations in the same order, so the bits are too.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import torch
from torch import Tensor


@torch.library.custom_op("adamkit::computed_once", mutates_args=())
def computed_once(x: Tensor) -> Tensor:
    """x, stored once by a compiled graph rather than recomputed where it is read."""
    return x.clone()


@computed_once.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


@functools.cache
def lowering_registered() -> bool:
    """Teach inductor, once, that :func:`computed_once` stores its input (False where it cannot
    be taught: the op would then run as an external call, still right but slower, so the pass
    is off). Called by the pass, which runs inside inductor: importing inductor's lowerings
    costs about a second, which ``import adamkit`` does not pay."""
    try:
        from torch._inductor.lowering import register_lowering
    except ImportError:  # pragma: no cover - a torch without inductor
        return False

    @register_lowering(torch.ops.adamkit.computed_once.default)
    def _store(x: Any) -> Any:
        x.realize()
        return x

    return True


# Scalar operations that take many cycles (a division is about ten; inductor emits each
# integer shift as a branch on its range, and a chain of them is the stochastic rounding's
# key); the rest (adds, products, compares, selects) cost less to recompute than a stored
# value costs inductor: every buffer a loop reads counts towards its limit of reads, past which
# it stores a reused intermediate the size of the tensor instead of recomputing it.
_COSTLY = frozenset(
    getattr(torch.ops.aten, name)
    for name in (
        "div",
        "reciprocal",
        "sqrt",
        "rsqrt",
        "pow",
        "exp",
        "exp2",
        "expm1",
        "log",
        "log1p",
        "log2",
        "sin",
        "cos",
        "tanh",
        "sigmoid",
        "atan2",
        "fmod",
        "remainder",
        "__rshift__",
        "__lshift__",
        "bitwise_right_shift",
        "bitwise_left_shift",
    )
)


def _is_scalar(node: torch.fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, Tensor) and value.dim() == 0


def _scalar_arithmetic(node: torch.fx.Node) -> bool:
    """A 0-d result of an operation on 0-d tensors (and sizes): not a view (a view's read is a
    single load) and not a reduction (inductor stores its result anyway)."""
    if node.op != "call_function" or not _is_scalar(node):
        return False
    target = node.target
    if not isinstance(target, torch._ops.OpOverload) or target.is_view:
        return False
    inputs = [n for n in node.all_input_nodes if isinstance(n.meta.get("val"), Tensor)]
    return all(_is_scalar(n) for n in inputs)


def _whole_mean(node: torch.fx.Node) -> bool:
    """A mean over a whole tensor: inductor stores the sum and divides it by the size where the
    mean is read, so every loop that reads it would divide once per vector."""
    target = node.target
    return (
        node.op == "call_function"
        and _is_scalar(node)
        and isinstance(target, torch._ops.OpOverload)
        and target.overloadpacket is torch.ops.aten.mean
    )


def _read_by_a_larger_tensor(node: torch.fx.Node) -> bool:
    return any(isinstance(u.meta.get("val"), Tensor) and not _is_scalar(u) for u in node.users)


def hoist_scalars(graph: torch.fx.Graph) -> None:
    """Mark with :func:`computed_once` every 0-d arithmetic result that a larger tensor reads
    and whose inlined computation would include a costly operation (not counting what an
    already marked input computes)."""
    if not lowering_registered():
        return
    costly: dict[torch.fx.Node, bool] = {}
    for node in list(graph.nodes):
        if _whole_mean(node):
            costly[node] = True
        elif _scalar_arithmetic(node):
            inlined = [n for n in node.all_input_nodes if costly.get(n, False)]
            costly[node] = node.target.overloadpacket in _COSTLY or bool(inlined)
        else:
            continue
        if not (costly[node] and _read_by_a_larger_tensor(node)):
            continue
        with graph.inserting_after(node):
            stored = graph.call_function(torch.ops.adamkit.computed_once.default, (node,))
        stored.meta["val"] = node.meta["val"]
        node.replace_all_uses_with(
            stored, delete_user_cb=functools.partial(operator.is_not, stored)
        )
        costly[node] = False  # its readers load it
