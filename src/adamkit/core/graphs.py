"""Compiled graphs of :func:`~adamkit.core.execute.update_one`, one per configuration and
process, called without Dynamo once Dynamo has checked a call.

``torch.compile`` traces the chunk body (a fixed number of jobs) once per configuration. Its
graph goes to inductor through :meth:`Configuration.capture`, which keeps inductor's compiled
callable with the Python expressions of its inputs (Dynamo's sources, such as
``L['tensors'][3].size()[0]``). A call object (:mod:`adamkit.core.compiled`) goes through
Dynamo the first time, whose guards then check its tensors, and learns which graph served it;
later steps of the same call object have tensors of the same sizes, strides, dtypes and devices
(the arrangement is rebuilt whenever a parameter, its storage or its state changes), so they
call that graph directly. That skips Dynamo's guards and frame handling, about 100 us of the
~120 us a call of eight jobs costs in Python.

Dynamo also guards global state, the thread count (``torch.set_num_threads``) among it: a call
object made after the thread count changed traces its configuration again (inductor's code then
comes from its on-disk cache, which does not key on threads). Graphs are right for any thread
count (``cpp.dynamic_threads``), so call objects made before keep theirs.

A configuration's first trace goes through torch's ahead-of-time capture, which keeps what
Dynamo made (graph, feeding code, guards) so that it can be stored on disk
(:mod:`adamkit.core.stored_traces`); a later process loads it instead of tracing, and its
calls go through it once their stored guards pass (else through Dynamo, as above).
"""

from __future__ import annotations

import logging
import re
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx.experimental._config as fx_config

from adamkit.core import stored_traces
from adamkit.core.codegen import adjusted_codegen, cache_tag_options
from adamkit.core.execute import update_one
from adamkit.core.reduce import Segments

logger = logging.getLogger("adamkit")

Function = Callable[..., None]
# Sizes are symbolic and traced on tiny dummies, so inductor's size hints would make it emit
# serial loops; with dynamic threads every loop gets a parallel region sized at run time.
# Size asserts are off: a graph is only called directly on a call object that Dynamo's guards
# have checked, whose tensors keep their sizes and strides (see the module docstring).
# Multiplies and adds are contracted into fused multiply-adds (one rounding instead of two), which
# halves the arithmetic of the polynomials that make compute-bound rules (SAdam's softplus).
# An intermediate of more than 40 operations read more than once is computed once per element
# and kept (inductor's CPU default is 50); within one kernel it needs no tensor-sized buffer
# (test_no_optimizer_keeps_a_tensor_sized_temporary). Inlined, it is traced again for every
# read: B_Adam's Φ feeds its softplus polynomials, whose terms each read it, so code generation
# of its general configuration ran 95,098 loop-body nodes instead of ~6,700
# (test_code_generation_does_not_retrace_shared_intermediates), and its cold step 2 on the
# GPT-like set took 44.6 s instead of 15.0 s (adamkit speed, issue 5's closing notes).
# Loops of the same range may fuse without sharing a buffer (``aggressive_fusion``): with
# core/codegen.py's ``_side_by_side_reductions``, two reductions over one tensor's range (RMS(θ)
# and RMS(g) of Pre_LAMB) run as one pass.
# Casts are emulated: inductor computes bfloat16 values in float32 and otherwise drops a round
# trip float32 -> bfloat16 -> float32, which made a Kahan pair's lo = x - round(x) zero, losing
# every update below half a bfloat16 ulp (test_compiled_kahan_pairs_keep_their_compensation).
INDUCTOR_OPTIONS = {
    "cpp.dynamic_threads": True,
    "size_asserts": False,
    "cpp.enable_floating_point_contract_flag": "fast",
    "realize_opcount_threshold": 40,
    "aggressive_fusion": True,
    "emulate_precision_casts": True,
}
# In calls that recompute (``k["recompute"]``: huge tensors, merged ones) an intermediate read
# twice is recomputed unless it reads more than 16 buffers (inductor's default is 4): a stored
# one is a temporary the size of the tensors, and a merged call's segment indices and
# per-segment statistics count as reads (B_Adam kept its new v). Other calls keep inductor's
# choice, which keeps LAMB's direction between its norm's pass and its update's.
RECOMPUTE_OPTIONS = {"realize_reads_threshold": 16}
# A rule with reductions on 8-bit state (``INLINE_DECODED``) keeps no intermediate for its
# number of operations: its decoded moments (some 50 operations of selects) were kept between
# the pass of its reductions (LAMB's norms, Adam-mini's row means, the block maxima of the new
# codes) and the update's (LAMB on one 25M tensor: 8 bytes per parameter). Traced once per
# loop body whatever its reads (codegen._loaders_memoized), an inlined intermediate costs no
# compile time per read. Not for element-wise rules, whose one pass per run needs no kept
# value across passes: inlined there, 8-bit AdamW stepped 25 % slower.
# Nor for its reads: a value read more than 4 times (realize_reads_threshold), or one that
# has gathered more than 8 reads (realize_acc_reads_threshold, B_Adam's new update, whose
# block maxima the codes' pass needs) was kept. On a 4M tensor (below LARGE_NUMEL) B_Adam then
# held 8.06 bytes per parameter, the AdamW-mini-SF pair 8.03, LAMB and SU_Adam 4.03; 0.03-0.06
# with these (test_an_8bit_step_below_the_recompute_size_keeps_no_tensor_sized_temporary).
# The price is recomputation: 8-bit B_Adam on the GPT-like set stepped 206-301 ms against 146
# (a softplus series per element, twice), LAMB about 100 against 85-90.
INLINE_DECODED_OPTIONS = {
    "realize_opcount_threshold": 100_000,
    "realize_reads_threshold": 16,
    "realize_acc_reads_threshold": 1_000,
}
# The sources a directly called graph may read: the chunk body's arguments, their items, and
# the sizes, strides and offsets of those tensors.
_SOURCE = re.compile(
    r"L\['(tensors|scalars|indices)'\](\[\d+\])*"
    r"(\.size\(\)\[\d+\]|\.stride\(\)\[\d+\]|\.storage_offset\(\))?"
)


def _joined(t: torch.Tensor, length: int) -> torch.Tensor:
    """A tensor whose last dimension arrives split in pieces of ``length``, joined again. The
    test of the pieces' length is a guard that makes it a constant of the graph (each
    tensor's sizes are symbols of their own), so that inductor knows each row is whole pieces
    (blocks, or segments of one: jobs.split_length)."""
    if t.shape[-1] != length:
        raise ValueError(f"a split job's last dimension is {t.shape[-1]}, not {length}")
    return t.flatten(-2)


def _rows(t: torch.Tensor, length: int) -> torch.Tensor:
    """A rows job's tensor, as it is: the test of its rows' length (when it has rows: not its
    per-block tensors, 1-D) is a guard that makes the block a constant of the graph. (Marking
    the dimension static, as before, is a mark that torch's serialised guards do not keep: a
    stored trace's guards then refused every rows job.)"""
    if t.dim() == 2 and t.shape[-1] != length:
        raise ValueError(f"a rows job's rows are {t.shape[-1]} long, not {length}")
    return t


def _chunk_body(tensors, scalars, indices):  # type: ignore[no-untyped-def]
    # Free names, bound per configuration by ``_configured``: RULE, CODECS, PCODEC, STATIC,
    # FLOAT_NAMES, INT_NAMES, SLOT_NAMES, STATE_NAMES, EXACT, SEGMENTED, UNIFORM, SCALAR_NAMES,
    # SPLIT (the pieces' length of a split job's last dimension, else 0), SPLIT_NAMES, ROWS
    # (the block of a rows job, else 0).
    # (INLINE_DECODED chooses inductor's options only: see Configuration.)
    # ``indices``: each job's parameter index and the number of its first element.
    floats, ints = scalars
    segments = None
    if SEGMENTED:  # noqa: F821
        segments = Segments(tensors[-3], tensors[-2], tensors[-1], UNIFORM)  # noqa: F821
        tensors = tensors[:-3]
    k = dict(STATIC)  # noqa: F821
    for i, name in enumerate(FLOAT_NAMES):  # noqa: F821
        k[name] = floats[i]
    for i, name in enumerate(INT_NAMES):  # noqa: F821
        k[name] = ints[i]
    n_slot, n_state = len(SLOT_NAMES), len(STATE_NAMES)  # noqa: F821
    per_job = n_slot + 1 + n_state
    for i in range(len(tensors) // per_job):
        base = i * per_job
        slot = dict(zip(SLOT_NAMES, tensors[base : base + n_slot]))  # noqa: F821, B905
        grad = tensors[base + n_slot + n_state]
        state = dict(
            zip(STATE_NAMES, tensors[base + n_slot : base + n_slot + n_state])  # noqa: F821, B905
        )
        if SPLIT:  # noqa: F821 - last dimensions split (jobs.split_length)
            slot, state = (
                {n: _joined(t, SPLIT) if n in SPLIT_NAMES else t for n, t in d.items()}  # noqa: F821
                for d in (slot, state)
            )
            grad = _joined(grad, SPLIT)  # noqa: F821
        if ROWS:  # noqa: F821 - runs of whole blocks as rows (jobs.Job.rows)
            slot, state = (
                {n: _rows(t, ROWS) for n, t in d.items()}  # noqa: F821
                for d in (slot, state)
            )
            grad = _rows(grad, ROWS)  # noqa: F821
        update_one(
            RULE,  # noqa: F821
            slot,
            grad,
            state,
            CODECS,  # noqa: F821
            PCODEC,  # noqa: F821
            k,
            indices[i, 0],
            EXACT,  # noqa: F821
            segments if i == 0 else None,
            SCALAR_NAMES,  # noqa: F821
            indices[i, 1],
        )


def _configured(number: int, bindings: dict[str, Any]) -> Function:
    """A fresh function (own code object, own globals) for one configuration."""
    code = _chunk_body.__code__.replace(co_name=f"adamkit_chunk_{number}")
    return types.FunctionType(code, {**_chunk_body.__globals__, **bindings}, code.co_name)


class Graph:
    """One graph inductor compiled, with the expressions that pick its inputs out of the chunk
    body's arguments."""

    __slots__ = ("compiled", "inputs")

    def __init__(self, compiled: Callable[..., Any], inputs: Callable[[dict], Sequence[Any]]):
        self.compiled, self.inputs = compiled, inputs

    def __call__(self, tensors: list[torch.Tensor], scalars: Any, indices: torch.Tensor) -> None:
        self.compiled(*self.inputs({"tensors": tensors, "scalars": scalars, "indices": indices}))


def _input_reader(sources: list[str]) -> Callable[[dict], Sequence[Any]] | None:
    """A function of Dynamo's locals ``L`` returning the graph's inputs; None if a source is
    not one of the simple forms in ``_SOURCE``."""
    if not all(_SOURCE.fullmatch(s) for s in sources):
        return None
    reader: Callable[[dict], Sequence[Any]] = eval(f"lambda L: ({', '.join(sources)},)", {})
    return reader


class Configuration:
    """The compiled chunk function of one configuration, and the graphs inductor made of it."""

    def __init__(self, number: int, bindings: dict[str, Any], key: tuple = ()) -> None:
        # which graph served the last call through Dynamo, per thread (optimizers of one
        # configuration may step in several threads)
        self.last = threading.local()
        self.graphs = 0  # graphs it holds, traced here or loaded (Dynamo recompiles add more)
        self.loaded = False  # whether its first graph came from a stored trace
        self.options = {
            **(RECOMPUTE_OPTIONS if bindings["STATIC"].get("recompute") else {}),
            **(INLINE_DECODED_OPTIONS if bindings.get("INLINE_DECODED") else {}),
        }
        self.function = _configured(number, bindings)
        self.dynamo = torch.compile(
            self.function, backend=self.capture, dynamic=True, fullgraph=True
        )
        self.stored_name = stored_traces.trace_key(key, bindings, self.compile_options())
        self.stored: stored_traces.StoredTrace | None = None
        self.store_lock = threading.Lock()

    def compile_options(self) -> dict[str, Any]:
        """Inductor's options for this configuration's graphs."""
        return {**INDUCTOR_OPTIONS, **self.options, **cache_tag_options()}

    def inductor(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        """Inductor on Dynamo's graph, with adamkit's options and code generation."""
        from torch._inductor.compile_fx import compile_fx

        self.graphs += 1
        with adjusted_codegen():
            return compile_fx(gm, example_inputs, config_patches=self.compile_options())

    def capture(self, gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Callable[..., Any]:
        """Dynamo's backend: inductor, keeping what it compiled as a :class:`Graph`."""
        sources = [n.meta["grapharg"].source.name for n in gm.graph.find_nodes(op="placeholder")]
        reader = _input_reader(sources)
        compiled = self.inductor(gm, example_inputs)
        graph = Graph(compiled, reader) if reader is not None else None

        def serve(*args: Any) -> Any:
            self.last.served = graph
            return compiled(*args)

        return serve

    def through_dynamo(
        self, tensors: list[torch.Tensor], scalars: Any, indices: torch.Tensor
    ) -> Graph | None:
        """Call through Dynamo (which checks, and compiles if need be), or through the stored
        trace if its guards pass; the graph that served."""
        self.last.served = None
        # Without duck sizing every dimension gets its own symbol, so a graph traced on the
        # dummies (all sizes distinct) is not re-traced when real tensors share sizes. Python
        # floats (constants of the rules, such as a default argument's 1.0) are compiled in,
        # not lifted to graph inputs: the step's numbers come as tensors already.
        with (
            fx_config.patch(use_duck_shape=False),
            torch._dynamo.config.patch(specialize_float=True),
        ):
            stored = self._stored(tensors, scalars, indices)
            if stored is not None and stored.admits(tensors, scalars, indices):
                return self._call_stored(stored, tensors, scalars, indices)
            self.dynamo(tensors, scalars, indices)
        return self.last.served

    def _stored(
        self, tensors: list[torch.Tensor], scalars: Any, indices: torch.Tensor
    ) -> stored_traces.StoredTrace | None:
        """The stored trace, resolved at the first call: loaded, else traced on this call's
        arguments by torch's ahead-of-time capture and stored; None where storing is off or
        failed (Dynamo then traces as usual)."""
        if self.stored_name is None:  # not storable, or resolved already
            return self.stored
        with self.store_lock:
            if self.stored_name is not None:
                name, self.stored_name = self.stored_name, None  # resolved once
                options = self.compile_options()
                stored = stored_traces.load(name, self.function.__globals__, options)
                if stored is not None:
                    self.graphs, self.loaded = self.graphs + 1, True
                else:
                    stored = self._capture_ahead(name, tensors, scalars, indices)
                self.stored = stored
            return self.stored

    def _capture_ahead(
        self, name: str, tensors: list[torch.Tensor], scalars: Any, indices: torch.Tensor
    ) -> stored_traces.StoredTrace | None:
        """Trace and compile by torch's ahead-of-time capture and store the result; None if
        the capture failed (logged: the ordinary path traces then)."""
        capture = torch.compile(self.function, backend=self.inductor, dynamic=True, fullgraph=True)
        try:
            function = capture.aot_compile(((tensors, scalars, indices), {}))
        except Exception as err:
            logger.debug("adamkit: ahead-of-time capture failed (%s); tracing as usual", err)
            return None
        stored = stored_traces.StoredTrace(function)
        stored_traces.save(name, stored)
        return stored

    @staticmethod
    def _call_stored(
        stored: stored_traces.StoredTrace,
        tensors: list[torch.Tensor],
        scalars: Any,
        indices: torch.Tensor,
    ) -> Graph:
        """Step through a stored trace whose guards passed; returned as the graph that serves
        the call object's later steps (without the guards, as Dynamo's graphs do)."""
        graph = Graph(stored.unguarded, _arguments)
        graph(tensors, scalars, indices)
        return graph


def _arguments(L: dict) -> tuple[Any, ...]:
    """The chunk body's own arguments (a stored trace's code picks the graph's inputs)."""
    return L["tensors"], L["scalars"], L["indices"]


class Configurations:
    """The compiled chunk functions of every optimizer in this process, by configuration, so
    each configuration is traced and compiled once per process."""

    def __init__(self) -> None:
        self.known: dict[tuple, Configuration | None] = {}

    def get(
        self,
        key: tuple,
        bindings: dict[str, Any],
        trial: Callable[[Configuration], None],
    ) -> Configuration | None:
        """The configuration for ``key``: compiled and tried (``trial``) the first time;
        ``None`` if that failed, after which the caller uses the eager path."""
        if key in self.known:
            return self.known[key]
        config: Configuration | None = Configuration(len(self.known), bindings, key)
        try:
            trial(config)  # type: ignore[arg-type]
        except Exception as err:  # any compiler failure: fall back, once, loudly
            logger.warning("adamkit: torch.compile failed (%s); using the eager path", err)
            config = None
        self.known[key] = config
        return config


CONFIGURATIONS = Configurations()
