"""The graph pass that computes a compiled step's costly scalar arithmetic once per call."""

from __future__ import annotations

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from adamkit.core.hoist import computed_once, hoist_scalars

STORED = torch.ops.adamkit.computed_once.default


def hoisted(fn, *args):  # type: ignore[no-untyped-def]
    """``fn`` traced to an aten graph on ``args``, with the pass applied."""
    gm = make_fx(fn)(*args)
    hoist_scalars(gm.graph)
    gm.recompile()
    return gm


def stored_inputs(gm: torch.fx.GraphModule) -> list[str]:
    """The targets of the nodes that the pass stored."""
    return [str(n.args[0].target) for n in gm.graph.nodes if n.target is STORED]


def test_a_costly_scalar_read_by_a_tensor_is_stored_and_cheap_ones_are_not() -> None:
    def step(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        ratio = k[0] / k[1]  # costly, read by x: stored
        shift = 1 - k[2]  # cheap: recomputed where it is read
        return x * ratio + shift + x * k[3]  # k[3] is a view: a single load

    x, k = torch.randn(10), torch.tensor([3.0, 7.0, 0.25, 2.0])
    gm = hoisted(step, x, k)
    assert stored_inputs(gm) == ["aten.div.Tensor"]
    torch.testing.assert_close(gm(x, k), step(x, k), rtol=0, atol=0)


def test_a_cheap_scalar_over_a_costly_one_is_stored_once_at_the_costly_one() -> None:
    def step(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        root = torch.sqrt(k[0])
        return x * root + x * (root * 2)  # the product reads the stored root: not stored again

    x, k = torch.randn(10), torch.tensor([9.0])
    gm = hoisted(step, x, k)
    assert stored_inputs(gm) == ["aten.sqrt.default"]
    torch.testing.assert_close(gm(x, k), step(x, k), rtol=0, atol=0)


def test_the_stochastic_rounding_key_is_stored_once() -> None:
    # stream_key's integer hash (shifts, inductor's branchy scalar code) is stored where the
    # element loop reads it, not recomputed for each vector
    from adamkit.core.rounding import random_bits, stream_key

    def bits(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        return random_bits(x, stream_key(7, 3, 1, step), 16)

    x, step = torch.zeros(10, dtype=torch.int32), torch.tensor(5)
    gm = hoisted(bits, x, step)
    [stored] = [n for n in gm.graph.nodes if n.target is STORED]
    assert all(
        not isinstance(u.meta["val"], torch.Tensor) or u.meta["val"].dim() for u in stored.users
    )
    assert torch.equal(gm(x, step), bits(x, step))


def test_scalars_read_only_by_scalars_and_reductions_are_left_alone() -> None:
    def step(x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.abs().sum() / x.numel()  # a reduction's result divided: stored
        counter = k[0] / k[1]  # read by nothing larger: left alone
        return x / mean, counter

    x, k = torch.randn(10), torch.tensor([1.0, 3.0])
    gm = hoisted(step, x, k)
    assert stored_inputs(gm) == ["aten.div.Tensor"]
    [stored] = [n for n in gm.graph.nodes if n.target is STORED]
    assert str(stored.args[0].args[0].target) == "aten.sum.default"
    for a, b in zip(gm(x, k), step(x, k), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_computed_once_is_a_copy_in_eager_mode() -> None:
    x = torch.tensor(2.5)
    y = computed_once(x)
    assert torch.equal(x, y) and y.data_ptr() != x.data_ptr()


def test_adamkit_compiles_with_the_pass() -> None:
    from adamkit.core.codegen import cache_tag_options

    def step(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return x * (k[0] / k[1])

    gm = make_fx(step)(torch.randn(4), torch.tensor([1.0, 2.0]))
    cache_tag_options()["post_grad_custom_post_pass"](gm.graph)
    assert stored_inputs(gm) == ["aten.div.Tensor"]


def test_importing_adamkit_leaves_inductors_lowerings_unloaded() -> None:
    # The lowering is registered by the pass, inside inductor: `import adamkit` does not pay
    # for importing inductor's lowerings (about a second).
    import subprocess
    import sys

    code = "import sys, adamkit; print('torch._inductor.lowering' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_whole_mean_is_stored_once_where_a_tensor_reads_what_follows_from_it() -> None:
    # inductor lowers a mean to a stored sum divided by the size where it is read; the first
    # scalar a tensor reads from it is stored (here the narrowed, guarded mean), and a mean
    # over dimensions (not 0-d) is left to inductor
    def step(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.mean(x.abs(), dtype=torch.float64).to(x.dtype)
        floor = torch.where(mean == 0, torch.inf, mean)
        rows = x.view(2, -1).mean(1, keepdim=True)
        return x.clamp(min=floor), x.view(2, -1) - rows

    x = torch.randn(10)
    gm = hoisted(step, x)
    assert stored_inputs(gm) == ["aten.where.self"]
    for a, b in zip(gm(x), step(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
