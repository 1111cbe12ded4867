"""Traced configurations stored on disk (adamkit.core.stored_traces): which configurations are
stored, that a stored trace steps exactly as a traced one (in this process and in a new one),
and that a missing, damaged or refused one costs a trace, never a result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    assert_identical_lists,
    compiled_calls,
    compiled_configurations,
    grad_stream,
    graphs_held,
    make_params,
)

import adamkit
from adamkit.core import compiled, graphs, stored_traces

SHAPES = ((300, 40), (40,), (20, 30), (7,))
STEPPED_SHAPES = ((300, 40), (7,), (5, 3))


class _Recorded(graphs.Configurations):
    """Configurations that record each one's stored-trace name and compile nothing (the
    eager path then steps): what would be stored, without the compile."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str | None] = []

    def get(self, key: tuple, bindings: dict[str, Any], trial: Any) -> None:
        # a configuration is named when made; torch.compile compiles only when called
        self.names.append(graphs.Configuration(len(self.names), bindings, key).stored_name)
        return None


def _recorded_names(
    monkeypatch: pytest.MonkeyPatch, cls: type, state_dtype: str | None
) -> list[str | None]:
    recorded = _Recorded()
    monkeypatch.setattr(compiled, "CONFIGURATIONS", recorded)
    params = [torch.nn.Parameter(p.detach()) for p in make_params(torch.float32, SHAPES)]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = cls(params, backend="compiled", state_dtype=state_dtype)
    opt.step()
    return recorded.names


@pytest.mark.parametrize("state_dtype", [None, "bfloat16", "int8"])
@pytest.mark.parametrize("name", adamkit.available())
def test_every_registered_optimizer_s_configurations_are_storable(
    name: str, state_dtype: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = _recorded_names(monkeypatch, adamkit.optimizer_class(name), state_dtype)
    assert recorded and None not in recorded
    assert len(set(recorded)) == len(recorded)  # configurations do not share a name


class _UsersAdam(adamkit.AdamW):
    """An optimizer defined outside adamkit: its code is not in the key."""


def test_a_configuration_bound_to_code_outside_adamkit_is_not_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert set(_recorded_names(monkeypatch, _UsersAdam, None)) == {None}


def test_storing_is_off_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAMKIT_STORED_TRACES", "0")
    assert set(_recorded_names(monkeypatch, adamkit.AdamW, None)) == {None}
    monkeypatch.delenv("ADAMKIT_STORED_TRACES")
    with torch._inductor.config.patch(force_disable_caches=True):
        assert set(_recorded_names(monkeypatch, adamkit.AdamW, None)) == {None}


def test_the_name_changes_with_the_source_the_bindings_and_the_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key, bindings = ("k",), {"RULE": adamkit.AdamW.rule, "STATIC": {"maximize": False}}
    options = dict(graphs.INDUCTOR_OPTIONS)
    name = stored_traces.trace_key(key, bindings, options)
    assert name is not None and name == stored_traces.trace_key(key, dict(bindings), options)
    others = [
        stored_traces.trace_key(("k2",), bindings, options),
        stored_traces.trace_key(key, {**bindings, "STATIC": {"maximize": True}}, options),
        stored_traces.trace_key(key, bindings, {**options, "realize_opcount_threshold": 7}),
    ]
    monkeypatch.setattr(stored_traces, "_SOURCE_DIGEST", ["another source"])
    others.append(stored_traces.trace_key(key, bindings, options))
    assert name not in others and len(set(others)) == len(others)


def _stepped(
    configurations: graphs.Configurations, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    """Three compiled AdamW steps on bfloat16 state (stochastic rounding: the random bits
    are numbered by element, so any difference in the graph's indexing shows) with
    ``configurations`` as the process's."""
    monkeypatch.setattr(compiled, "CONFIGURATIONS", configurations)
    params = make_params(torch.float32, STEPPED_SHAPES)
    grads = grad_stream(params)
    opt = adamkit.create("adamw", params, backend="compiled", state_dtype="bfloat16")
    for i in range(3):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.float()
        opt.step()
    return params, opt


@pytest.mark.slow
def test_a_stored_trace_steps_as_the_traced_one_and_a_damaged_one_is_traced_again(
    fresh_configurations: graphs.Configurations, monkeypatch: pytest.MonkeyPatch
) -> None:
    traced, _ = _stepped(fresh_configurations, monkeypatch)
    first = compiled_configurations(fresh_configurations)
    assert first and not any(c.loaded for c in first)
    files = sorted(stored_traces.directory().glob("*.trace"))
    assert len(files) == len(first)

    loaded = graphs.Configurations()
    params, opt = _stepped(loaded, monkeypatch)
    assert all(c.loaded for c in compiled_configurations(loaded))
    assert len(compiled_configurations(loaded)) == len(first) and graphs_held(loaded) == len(first)
    assert_identical_lists(params, traced)
    assert all(call.graph is not None for call in compiled_calls(opt))

    for path in files:
        path.write_bytes(b"not a trace")
    again = graphs.Configurations()
    params, _ = _stepped(again, monkeypatch)
    assert not any(c.loaded for c in compiled_configurations(again))
    assert_identical_lists(params, traced)
    reloaded = graphs.Configurations()  # the damaged files were replaced
    params, _ = _stepped(reloaded, monkeypatch)
    assert all(c.loaded for c in compiled_configurations(reloaded))
    assert_identical_lists(params, traced)


@pytest.mark.slow
def test_a_stored_trace_whose_guards_fail_leaves_the_call_to_dynamo(
    fresh_configurations: graphs.Configurations, monkeypatch: pytest.MonkeyPatch
) -> None:
    traced, _ = _stepped(fresh_configurations, monkeypatch)
    monkeypatch.setattr(stored_traces.StoredTrace, "admits", lambda self, *args: False)
    refused = graphs.Configurations()
    params, _ = _stepped(refused, monkeypatch)
    configurations = compiled_configurations(refused)
    assert all(c.loaded for c in configurations)
    assert graphs_held(refused) == 2 * len(configurations)  # each traced by Dynamo as well
    assert_identical_lists(params, traced)


_PROCESS = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch, torch._dynamo.utils as dynamo_utils
    sys.path.insert(0, {tests!r})
    from helpers import grad_stream, make_params
    import adamkit
    from adamkit.core import compiled

    params = make_params(torch.float32, {shapes!r})
    grads = grad_stream(params)
    opt = adamkit.create("adamw", params, backend="compiled", state_dtype="int8")
    for i in range(3):
        for p, g in zip(params, grads(i)):
            p.grad = g.float()
        opt.step()
    known = [c for c in compiled.CONFIGURATIONS.known.values() if c is not None]
    digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in params))
    print(json.dumps({{
        "configurations": len(known),
        "loaded": sum(c.loaded for c in known),
        "dynamo_graphs": dynamo_utils.counters["stats"]["unique_graphs"],
        "digest": digest.hexdigest(),
    }}))
    """
)


def _process(cache: Path, **env: str) -> dict[str, Any]:
    script = _PROCESS.format(tests=str(Path(__file__).parent), shapes=STEPPED_SHAPES)
    environ = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), **env}
    out = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_a_second_process_steps_from_stored_traces_without_tracing(tmp_path: Path) -> None:
    # 8-bit state: the (300, 40) tensor is stepped as runs of whole blocks as rows, whose
    # block length a stored guard must admit (a static-dimension mark, once, was not kept)
    first = _process(tmp_path)
    assert first["configurations"] > 0 and first["loaded"] == 0
    second = _process(tmp_path)
    assert second["loaded"] == second["configurations"] == first["configurations"]
    assert second["dynamo_graphs"] == 0  # Dynamo traced nothing
    assert second["digest"] == first["digest"]
    # Dynamo's own trace, with inductor's cache warm: the same bits
    dynamo = _process(tmp_path, ADAMKIT_STORED_TRACES="0")
    assert dynamo["loaded"] == 0 and dynamo["dynamo_graphs"] == dynamo["configurations"]
    assert dynamo["digest"] == first["digest"]
