"""Adjustments to inductor's C++ code generation, in force only while adamkit compiles a rule.

Each one patches a function or method of inductor's C++ backend (``torch._inductor.codegen.cpp``;
one, of its dtype rules; one, of its loop bodies; two, of its fusion choices; one, of its IR's
loaders) for the duration of :func:`adjusted_codegen` and is skipped where that inductor has no
such attribute. Most change how fast the generated code runs (or whether it compiles at all),
never what it computes; :func:`_dtype_rules_built_once` and :func:`_loaders_memoized` how fast
it is generated; :func:`_threads_at_least_two`
keeps a kernel compiled in a one-thread process correct when it runs on several threads;
:func:`_remember_origin` only records, for :func:`_exact_bfloat16_by_truncation`, which op made
each value of a kernel. :data:`ADJUSTMENTS` lists them in the order they are applied and marks
those that only change speed as optional; :func:`adjustments_left_out` compiles without some,
which ``python -m adamkit.bench.adjustments`` uses to measure what each is worth.
Inductor's on-disk cache does not see such patches, so :func:`cache_tag_options` adds a graph
pass whose uuid, a hash of this file and of :mod:`adamkit.core.hoist` (and the names of the
adjustments left out), enters the cache key; the pass itself is
:func:`~adamkit.core.hoist.hoist_scalars`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch

from adamkit.core import hoist

try:
    from torch._inductor import dtype_propagation as _dtype_propagation
    from torch._inductor import ir as _ir
    from torch._inductor.codegen import cpp as _cpp
except ImportError:  # pragma: no cover - a torch without inductor's C++ backend
    _cpp = _dtype_propagation = _ir = None


@contextlib.contextmanager
def _patched(owner: Any, name: str, replacement: Callable[[Any], Any]) -> Iterator[None]:
    """``owner.name`` replaced by ``replacement(current)``, restored on exit; nothing done
    where ``owner`` has no such attribute (another inductor layout)."""
    current = getattr(owner, name, None)
    if current is None:
        yield
        return
    own = vars(owner)
    had, raw = name in own, own.get(name)
    setattr(owner, name, replacement(current))
    try:
        yield
    finally:
        if had:
            setattr(owner, name, raw)
        else:
            delattr(owner, name)


# Depths of the outer-loop fusions whose code is being generated (innermost last).
_OUTER_LOOP_DEPTHS: list[int] = []


def _outer_loop_fusion_per_row(original: Any) -> Any:
    """Code of an outer-loop fusion with its per-row nodes as scalar statements of the row.

    Adam-mini's per-row mean of g², its write of the row's v and the row's update fuse into
    one loop over rows (inductor's outer-loop fusion), so a row of g, read by the mean, is
    still in cache when the update reads it: g crosses the memory bus once, not twice. Two
    things made inductor 2.13 fall back to separate loops, or fail:

    * the write of v loops over rows only, so inductor vectorized it over rows, while the mean
      and the update step one row at a time (``check_outer_fusion_loop_level_attr`` refused
      the fusion); :func:`_scalar_rows_in_outer_loops` emits it as a scalar statement per row;
    * a buffer whose user does not load it (an in-place update's mutation) made the search for
      row-local buffers raise ``KeyError: 'bufN'`` (pytorch/pytorch#196570: Adam with gradient
      centralization on conv weights); such a buffer is not made local
      (:func:`_unread_buffer_has_no_read_index`), before anything is generated."""
    from torch._inductor import loop_body

    def codegen_outer_loop_node(self: Any, node: Any) -> Any:
        _OUTER_LOOP_DEPTHS.append(node.outer_loop_fusion_depth)
        try:
            with _patched(loop_body.LoopBody, "get_read_expr", _unread_buffer_has_no_read_index):
                return original(self, node)
        finally:
            _OUTER_LOOP_DEPTHS.pop()

    return codegen_outer_loop_node


def _unread_buffer_has_no_read_index(original: Any) -> Any:
    """``LoopBody.get_read_expr`` of a buffer the body does not load: None (no index, so not
    contiguous), where inductor raises KeyError."""

    def get_read_expr(self: Any, buffer_name: str) -> Any:
        try:
            return original(self, buffer_name)
        except KeyError:
            return None

    return get_read_expr


def _scalar_rows_in_outer_loops(original: Any) -> Any:
    """No vectorization for nodes that loop over the fused outer loops only (one value per
    row, such as Adam-mini's v): inside an outer-loop fusion they run once per row, as
    scalars, so that every fused node steps its outer loops alike (see
    :func:`_outer_loop_fusion_per_row`)."""

    def select_tiling(self: Any, fn_list: Any, var_sizes_list: Any) -> Any:
        chosen = original(self, fn_list, var_sizes_list)
        depth = _OUTER_LOOP_DEPTHS[-1] if _OUTER_LOOP_DEPTHS else None
        if depth is not None and all(
            len(sizes) == depth and not reduced for sizes, reduced in var_sizes_list
        ):
            return ([], [], *chosen[2:])  # no tiling factors, no tiled indices
        return chosen

    return select_tiling


def _tiling(original: Any) -> Any:
    """A loop that stores bfloat16/float16 state is tiled at that dtype's vector width; with
    AVX2, a loop without 16-bit values is tiled at twice the float32 width.

    Inductor tiles a fused loop at the float32 width (16 lanes with AVX-512) unless *every*
    node of it touches the same 16-bit dtype, and the parameter's own update touches float32
    only. Its 16-bit stores are then half-width masked stores, which made bfloat16 state
    slower than float32 state on AMD Zen 4. Telling the heuristic that the float32 nodes
    share the loop's 16-bit dtype tiles the loop at 32 lanes: full stores, with float32 values
    held in pairs of vectors, as inductor does for loops that are all 16-bit.

    With AVX2 (8 float32 lanes) the same pairs help loops with no 16-bit value at all: each
    operation is issued for two independent vectors, so a long chain of dependent operations
    (SAdam's polynomials between a square root and a division) overlaps with its twin, where
    one vector per iteration left the core waiting on latencies (the README gives the step
    times on a Zen 3). AVX-512 keeps its 16 lanes: not measured here."""
    lowp_of = getattr(_cpp, "get_loop_body_lowp_fp", None)
    if lowp_of is None or not hasattr(_cpp, "_get_loop_body"):
        return original

    def select_tiling(self: Any, fn_list: Any, var_sizes_list: Any) -> Any:
        found = {lowp_of(body)[0] for body in _cpp._get_loop_body(fn_list)} - {None}
        if not found and _on_avx2():
            found = {torch.bfloat16}  # a 16-bit width: twice the float32 one
        if len(found) != 1:
            return original(self, fn_list, var_sizes_list)
        (dtype,) = found

        def shared(body: Any) -> tuple[Any, bool]:
            lowp, needs_float = lowp_of(body)
            return lowp or dtype, needs_float

        with _patched(_cpp, "get_loop_body_lowp_fp", lambda _: shared):
            return original(self, fn_list, var_sizes_list)

    return select_tiling


def _on_avx2() -> bool:
    """Whether inductor generates AVX2 code here (8 float32 lanes; not AVX-512)."""
    return _x86_vectors() == "avx2"


def _threads_at_least_two(original: Callable[[], int]) -> Callable[[], int]:
    """Code generation plans for at least two threads.

    adamkit compiles with ``cpp.dynamic_threads``: a kernel's parallel regions take the thread
    count of the process that runs it. But inductor 2.13 wraps a scalar loop nested in a
    parallel region in ``#pragma omp single`` only when the process that *compiles* has more
    than one thread. Compiled with one (``torch.set_num_threads(1)``, as benchmark workers do)
    and then run on two, every thread ran Adam-mini's one-element v update, a read and a
    write of the same value: v took the step twice when one thread read after the other had
    written. Planning for two threads emits the ``single``, which one thread also runs right."""
    return lambda: max(2, original())


# Types whose bits a vector reinterprets lane for lane: same width, same lanes per vector.
_SAME_WIDTH = ({torch.float32, torch.int32}, {torch.float64, torch.int64})


def _vector_bitcast(original: Any) -> Any:
    """``x.view(torch.int32)`` of a float32 vector (and back) as one vector reinterpretation.

    Inductor has no vector form of a bitcast: it stores the vector, casts each element in a
    scalar loop and loads the result, which made stochastic rounding (float32 bits plus
    random bits) cost more than the whole update. ``at::vec::cast`` reinterprets the bits."""
    from torch._inductor.codegen.cpp_utils import DTYPE_TO_CPP
    from torch._inductor.virtualized import V

    def to_dtype_bitcast(x: Any, dtype: torch.dtype, src_dtype: torch.dtype) -> Any:
        if not any({dtype, src_dtype} <= pair for pair in _SAME_WIDTH):
            return original(x, dtype, src_dtype)
        lanes_of = getattr(V.kernel, "_get_num_vectors", None)
        if lanes_of is None:
            return original(x, dtype, src_dtype)
        target, vectors = DTYPE_TO_CPP[dtype], lanes_of(dtype)
        if vectors == 1:
            return f"at::vec::cast<{target}>({x})"
        return (
            f"[&]() {{ at::vec::VectorizedN<{target}, {vectors}> out; "
            f"for (int i = 0; i < {vectors}; i++) out[i] = at::vec::cast<{target}>({x}[i]); "
            "return out; }()"
        )

    return staticmethod(to_dtype_bitcast)


def _arange_by_broadcast(original: Any) -> Any:
    """A vector of consecutive indices as the broadcast start plus a constant vector.

    Inductor emits ``Vectorized<T>::arange(start, stride)``, which builds the vector from one
    scalar per lane in every iteration; the stochastic rounding's random bits start from the
    element's index, so every 16-bit store paid for it. ``Vectorized<T>(start) +
    Vectorized<T>::arange(0, stride)`` has the same lanes (start + i·stride), and its second
    term is a constant that the C++ compiler folds."""

    def arange(self: Any, index: Any, stride: Any) -> Any:
        if getattr(index, "is_vec", True) or getattr(index, "dtype", None) is None:
            return original(self, index, stride)
        vec = self._get_vec_type(index.dtype)
        csevar = self.cse.generate(self.compute, f"({vec}({index}) + {vec}::arange(0, {stride}))")
        csevar.dtype = index.dtype
        csevar.is_vec = True
        return csevar

    return arange


_BYTES = (torch.uint8, torch.int8)


def _byte_loads_in_registers(original: Any) -> Any:
    """A vector load of 8 or 16 bytes (8-bit state's codes) as one load, on AVX2.

    Inductor loads as many elements of every dtype as its float32 vectors have lanes: 8 or 16
    bytes (16 with the pairs of :func:`_tiling`) into a 32-lane byte vector, by
    ``Vectorized<uint8_t>::loadu(ptr, count)``. ATen 2.13's AVX2 form of that fills a stack
    buffer with ones, copies the bytes over it and loads the buffer back: the load waits for
    the stores (no store-to-load forwarding across them), which cost 8-bit state more than
    decoding its codes. One 8- or 16-byte load put under lanes of 1 gives the same vector.
    (AVX-512's ``loadu`` already loads 16 bytes directly.)"""
    from torch._inductor.codegen.cpp_utils import cexpr_index

    def load_line(
        self: Any, var: str, index: Any, dtype: torch.dtype, load_mask: Any = None
    ) -> Any:
        count = str(self.num_elems)
        direct = (
            dtype in _BYTES
            and load_mask is None
            and count in ("8", "16")
            and _on_avx2()
            and self._get_num_vectors(dtype) == 1
        )
        if not direct:
            return original(self, var, index, dtype, load_mask)
        vec = self._get_vec_type(dtype)
        loadbuf = f"{var} + {cexpr_index(index)}" if index != 0 else var
        if count == "8":
            return f"{vec}::set({vec}(1), {vec}::loadu_one_fourth({loadbuf}), 8)"
        low = f"_mm_loadu_si128(reinterpret_cast<const __m128i*>({loadbuf}))"
        return f"{vec}(_mm256_inserti128_si256(_mm256_set1_epi8(1), {low}, 0))"

    return load_line


def _dtype_rules_built_once(original: Any) -> Any:
    """The singleton of inductor's dtype rules builds its rules once, not at every call.

    Inductor 2.13 calls ``DtypePropagationOpsHandler()`` for every op it generates code for;
    the class returns its one instance, but ``__init__`` sets every op's rule on it again and
    compares the op names with ``dir()`` of it. That was a third of the time spent generating
    B_Adam's kernels, whose softplus polynomials are many ops. The rules are rebuilt only when
    the tables they come from have grown (a new op registered)."""
    from torch._inductor import utils
    from torch._inductor.codegen import common

    def build_rules(self: Any) -> None:
        tables = (len(utils.op_dtype_propagation_rules), len(common.pointwise_overrides_data))
        if vars(self).get("adamkit_built_from") != tables:
            original(self)
            self.adamkit_built_from = tables

    return build_rules


def _loaders_memoized(original: Any) -> Any:
    """A pointwise intermediate that is not stored (inlined into the loops that read it) is
    evaluated once per index in each trace of a loop body, not once per read.

    Inductor evaluates an inlined node's ``inner_fn`` at every read, so each read of a shared
    intermediate traces its whole expression again: a DAG is traced as a tree. 8-bit state
    makes deep shared chains (the decoded moment feeds the encoding's decade selects, each of
    which reads it); inlined, the loop body of 8-bit LAMB's update on one tensor traced 1.1
    million nodes and took some 500 s to compile, so inductor's opcount threshold kept such
    values in tensor-sized buffers (8 bytes per parameter). A read with the same ops handler
    (one trace) and the same index returns the value that handler gave the first read: the
    same expression, traced once. Handlers that cannot be weakly referenced, and indices that
    cannot be hashed, are evaluated as before."""
    import weakref

    from torch._inductor.virtualized import V

    memos: weakref.WeakKeyDictionary[Any, dict[tuple, Any]] = weakref.WeakKeyDictionary()

    def make_loader(self: Any) -> Any:
        inner = original(self)
        if inner is not getattr(self, "inner_fn", None):
            return inner

        def load(index: Any) -> Any:
            handler = V.get_ops_handler()
            key = (inner, tuple(index))
            try:
                memo = memos.setdefault(handler, {})
                if key in memo:
                    return memo[key]
            except TypeError:  # a handler without weak references, an unhashable index
                return inner(index)
            memo[key] = inner(index)
            return memo[key]

        return load

    return make_loader


def _remember_origin(original: Any) -> Any:
    """Every CSE variable of a kernel keeps the name and arguments of the op that made it
    (``adamkit_origin``), so that :func:`_masked_bits` can follow a value back."""

    def update_on_args(self: Any, name: str, args: Any, kwargs: Any) -> None:
        original(self, name, args, kwargs)
        self.adamkit_origin = (name, args)

    return update_on_args


# The mask that stochastic rounding to bfloat16 clears the low 16 bits of a float32 with.
_HIGH_HALF = 0xFFFF0000


def _constant(value: Any) -> int | None:
    """The integer a CSE value holds, if it is a constant."""
    if isinstance(value, int):
        return value
    origin = getattr(value, "adamkit_origin", None)
    if origin is not None and origin[0] == "constant" and isinstance(origin[1][0], int):
        return origin[1][0]
    return None


def _masked_bits(value: Any) -> Any:
    """For a float32 vector made as ``(y & 0xFFFF0000).view(torch.float32)``: the int32
    vector ``y``, whose high 16 bits are the value's bfloat16 bits; otherwise None."""
    origin = getattr(value, "adamkit_origin", None)
    if origin is None or origin[0] != "to_dtype_bitcast" or origin[1][2] != torch.int32:
        return None
    masked = getattr(origin[1][0], "adamkit_origin", None)
    if masked is None or masked[0] != "bitwise_and":
        return None
    for bits, mask in (masked[1][:2], masked[1][1::-1]):
        constant = _constant(mask)
        if constant is not None and constant & 0xFFFFFFFF == _HIGH_HALF:
            return bits if getattr(bits, "is_vec", False) else None
    return None


# The high 16 bits of two int32 vectors a and b, packed in order into one bfloat16 vector, per
# instruction set: a shift of each, an unsigned-saturating pack (no value exceeds 0xFFFF after
# the shift, so nothing saturates), which interleaves the halves per 128-bit lane, and the
# permutation of 64-bit chunks that puts them back in order.
_TRUNCATING_PACK = {
    "avx2": "_mm256_permute4x64_epi64(_mm256_packus_epi32(_mm256_srli_epi32({a}, 16), "
    "_mm256_srli_epi32({b}, 16)), 0xd8)",
    "avx512": "_mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), "
    "_mm512_packus_epi32(_mm512_srli_epi32({a}, 16), _mm512_srli_epi32({b}, 16)))",
}


def _exact_bfloat16_by_truncation(original: Any) -> Any:
    """``(y & 0xFFFF0000).view(torch.float32).to(torch.bfloat16)`` as the high halves of y.

    Stochastic rounding clears the low 16 bits of the float32 pattern, so the value is
    already a bfloat16 and narrowing it only drops those bits. ATen's conversion rounds to
    nearest even instead: per vector a NaN test, a shift, an and, two adds, a shift and a
    blend before the pack. With AVX2 those instructions made bfloat16 state slower than
    float32 state for AdamW; with AVX-512 they made it slower for the rules whose arithmetic
    bounds the step (SAdam, SRAdam, B_Adam, SU_Adam, AdamW-mini-SF; README). Here a shift per
    vector of y feeds the same pack (:data:`_TRUNCATING_PACK`), and the ``&`` goes unused. The
    bits are the same, except a NaN's payload (ATen canonicalises it; truncation keeps it,
    still a NaN). Other instruction sets keep ATen's conversion."""

    def get_to_dtype_expr(
        self: Any, src: Any, dtype: Any, src_dtype: Any, rounding: bool = False
    ) -> Any:
        pack = _TRUNCATING_PACK.get(_x86_vectors() or "")
        narrowing = dtype == torch.bfloat16 and src_dtype == torch.float32
        bits = _masked_bits(src) if narrowing else None
        pairs = self._get_num_vectors(torch.bfloat16)
        if pack is None or bits is None or self._get_num_vectors(torch.int32) != 2 * pairs:
            return original(self, src, dtype, src_dtype, rounding)

        def packed(first: str, second: str) -> str:
            return pack.format(a=first, b=second)

        if pairs == 1:
            return f"at::vec::Vectorized<at::BFloat16>({packed(f'{bits}[0]', f'{bits}[1]')})"
        return (
            f"[&]() {{ at::vec::VectorizedN<at::BFloat16, {pairs}> out; "
            f"for (int i = 0; i < {pairs}; i++) out[i] = at::vec::Vectorized<at::BFloat16>("
            f"{packed(f'{bits}[2 * i]', f'{bits}[2 * i + 1]')}); return out; }}()"
        )

    return get_to_dtype_expr


def _side_by_side_reductions(original: Any) -> Any:
    """Reductions over the same loop share it even when they read different tensors.

    Inductor fuses two nodes only where they share data, or, with ``aggressive_fusion``,
    pointwise nodes of the same loop; Pre_LAMB's RMS(θ) and RMS(g) then ran as two passes,
    each reading one tensor; as one pass, Pre_LAMB reached 1.28 times fused AdamW on the
    GPT-like set from 1.89 (with the conversions below; README, session 14). For such a pair
    the fusion heuristics see the score of a shared buffer (``score_fusion_memory_threshold``);
    the other heuristics (fusion size, peak memory, distance) still apply. Needs
    ``aggressive_fusion``, which lists pairs of the same loop as candidates."""
    from torch._inductor import config

    def decide(scheduler: Any, node1: Any, node2: Any, shared_data_score: int) -> bool:
        if (
            shared_data_score == 0
            and node1.is_reduction()
            and node2.is_reduction()
            and node1.group == node2.group
        ):
            shared_data_score = config.score_fusion_memory_threshold
        return original(scheduler, node1, node2, shared_data_score)

    return staticmethod(decide)


# float32 <-> float64 conversions of one vector register, for the instruction sets where they
# pay (:func:`_float64_conversions_in_registers`): ``widen(v, h)``
# converts half h of a float32 vector to a float64 vector; ``narrow(a, b)`` packs two float64
# vectors into one float32 vector.
_WIDENING = {
    "avx512": (
        "_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd({v}), {h})))",
        "_mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512("
        "_mm512_cvtpd_ps({a}))), _mm256_castps_pd(_mm512_cvtpd_ps({b})), 1))",
    ),
}


def _x86_vectors() -> str | None:
    """The x86 vector extension inductor generates code for here ("avx512", "avx2"), or None."""
    from torch._inductor import cpu_vec_isa

    isa = cpu_vec_isa.pick_vec_isa()
    if isinstance(isa, cpu_vec_isa.VecAVX512):
        return "avx512"
    return "avx2" if isinstance(isa, cpu_vec_isa.VecAVX2) else None


def _float64_conversions_in_registers(original: Any) -> Any:
    """float32 vectors widened to float64 (and back) by conversion instructions.

    ATen 2.13 has no vector conversion between float32 and float64 on x86: its generic
    ``at::vec::convert`` stores the vector, converts element by element and loads the result.
    adamkit's reductions accumulate in float64 (:mod:`adamkit.core.reduce`), so every reducing
    pass paid that per vector, and with AVX-512 the rules with a reduction (Pre_LAMB, UM,
    SU_Adam, LAMB, B_Adam, Adam-mini, ...) fell far behind fused AdamW (README, session 14).
    ``vcvtps2pd`` and ``vcvtpd2ps`` give the same values (exact widening; narrowing rounds to
    nearest even, as ``static_cast`` does). Emitted with AVX-512 only: with AVX2, on a Zen 3,
    the rules with reductions stepped as fast or faster on ATen's conversion (in one process,
    ``python -m adamkit.bench.adjustments``; the README's Speed section gives the ratios)."""

    def get_to_dtype_expr(
        self: Any, src: Any, dtype: Any, src_dtype: Any, rounding: bool = False
    ) -> Any:
        isa = _x86_vectors() if getattr(src, "is_vec", False) else None
        if isa not in _WIDENING or {src_dtype, dtype} != {torch.float32, torch.float64}:
            return original(self, src, dtype, src_dtype, rounding)
        floats = self._get_num_vectors(torch.float32)
        if self._get_num_vectors(torch.float64) != 2 * floats:
            return original(self, src, dtype, src_dtype, rounding)
        widen, narrow = _WIDENING[isa]  # type: ignore[index]
        if dtype == torch.float64:
            float_vector = [src] if floats == 1 else [f"{src}[{i}]" for i in range(floats)]
            parts = [widen.format(v=v, h=h) for v in float_vector for h in (0, 1)]
            cpp_type = "double"
        else:
            parts = [
                narrow.format(a=f"{src}[{2 * i}]", b=f"{src}[{2 * i + 1}]") for i in range(floats)
            ]
            cpp_type = "float"
        if len(parts) == 1:
            return f"at::vec::Vectorized<{cpp_type}>({parts[0]})"
        assigned = " ".join(f"out[{i}] = {part};" for i, part in enumerate(parts))
        return (
            f"[&]() {{ at::vec::VectorizedN<{cpp_type}, {len(parts)}> out; {assigned} "
            "return out; }()"
        )

    return get_to_dtype_expr


class Adjustment(NamedTuple):
    """One patch of inductor: ``attribute`` of the object ``owner()`` returns, replaced by
    ``replacement(current)``. ``optional`` ones change only how fast the generated code runs
    or how fast it is generated, so that :func:`adjustments_left_out` may leave them out to
    measure what each is worth (``python -m adamkit.bench.adjustments``)."""

    name: str
    owner: Callable[[], Any]
    attribute: str
    replacement: Callable[[Any], Any]
    optional: bool


def _choices() -> Any:
    from torch._inductor import choices  # not at import: it loads inductor's lowerings

    return choices.InductorChoices


ADJUSTMENTS: tuple[Adjustment, ...] = (
    Adjustment(
        "outer_loop_fusion_per_row",
        lambda: _cpp.CppScheduling,
        "codegen_outer_loop_node",
        _outer_loop_fusion_per_row,
        False,  # without it, centralized conv gradients fail to compile
    ),
    Adjustment("tiling", lambda: _cpp.TilingSelect, "select_tiling", _tiling, True),
    Adjustment(
        "scalar_rows_in_outer_loops",
        lambda: _cpp.TilingSelect,
        "select_tiling",
        _scalar_rows_in_outer_loops,
        False,  # part of the per-row fusion
    ),
    Adjustment(
        "vector_bitcast", lambda: _cpp.CppVecOverrides, "to_dtype_bitcast", _vector_bitcast, True
    ),
    Adjustment(
        "threads_at_least_two",
        lambda: _cpp,
        "parallel_num_threads",
        _threads_at_least_two,
        False,  # correctness
    ),
    Adjustment(
        "byte_loads_in_registers",
        lambda: _cpp.CppVecKernel,
        "_get_vec_load_line",
        _byte_loads_in_registers,
        True,
    ),
    Adjustment(
        "arange_by_broadcast", lambda: _cpp.CppVecKernel, "arange", _arange_by_broadcast, True
    ),
    Adjustment(
        "remember_origin",
        lambda: _cpp.CppCSEVariable,
        "update_on_args",
        _remember_origin,
        False,  # what exact_bfloat16_by_truncation reads
    ),
    Adjustment(
        "exact_bfloat16_by_truncation",
        lambda: _cpp.CppVecKernel,
        "get_to_dtype_expr",
        _exact_bfloat16_by_truncation,
        True,
    ),
    Adjustment(
        "float64_conversions_in_registers",
        lambda: _cpp.CppVecKernel,
        "get_to_dtype_expr",
        _float64_conversions_in_registers,
        True,
    ),
    Adjustment("side_by_side_reductions", _choices, "can_fuse", _side_by_side_reductions, True),
    Adjustment(
        "side_by_side_reductions",  # the same choice, for horizontal fusions
        _choices,
        "can_fuse_horizontal",
        _side_by_side_reductions,
        True,
    ),
    Adjustment("loaders_memoized", lambda: _ir.Pointwise, "make_loader", _loaders_memoized, True),
    Adjustment(
        "dtype_rules_built_once",
        lambda: _dtype_propagation.DtypePropagationOpsHandler,
        "__init__",
        _dtype_rules_built_once,
        True,
    ),
)
# The optional adjustments left out of the compiles in progress (:func:`adjustments_left_out`).
_LEFT_OUT: frozenset[str] = frozenset()


@contextlib.contextmanager
def adjustments_left_out(names: Iterable[str]) -> Iterator[None]:
    """Compiles inside leave out the named optional adjustments (to measure what each is
    worth); their kernels are keyed apart in inductor's caches (:func:`cache_tag_options`)."""
    global _LEFT_OUT
    chosen = frozenset(names)
    optional = {a.name for a in ADJUSTMENTS if a.optional}
    if not chosen <= optional:
        raise ValueError(
            f"adjustments_left_out: {sorted(chosen - optional)} are not optional adjustments; "
            f"the optional ones are {sorted(optional)}"
        )
    previous, _LEFT_OUT = _LEFT_OUT, chosen
    try:
        yield
    finally:
        _LEFT_OUT = previous


@contextlib.contextmanager
def adjusted_codegen() -> Iterator[None]:
    """Inductor's C++ code generation with adamkit's adjustments (see the module docstring),
    but those :func:`adjustments_left_out` leaves out."""
    if _cpp is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        for adjustment in ADJUSTMENTS:
            if adjustment.name not in _LEFT_OUT:
                stack.enter_context(
                    _patched(adjustment.owner(), adjustment.attribute, adjustment.replacement)
                )
        yield


@functools.cache
def cache_tag_options() -> dict[str, Any]:
    """Inductor options that key its caches on this module's source (empty where inductor has
    no custom graph passes): a kernel compiled without these adjustments, or under another
    version of them, is never served to adamkit, nor adamkit's kernels to anyone else."""
    try:
        from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files
    except ImportError:  # pragma: no cover - an inductor without custom passes
        return {}

    class AdjustedCodegenTag(CustomGraphPass):
        def __call__(self, graph: Any) -> None:
            hoist.hoist_scalars(graph)

        def uuid(self) -> bytes:
            left_out = ",".join(sorted(_LEFT_OUT)).encode()
            return get_hash_for_files((__file__, hoist.__file__)) + left_out

    return {"post_grad_custom_post_pass": AdjustedCodegenTag()}
