"""Bad input gets a clear error (argument, value, accepted range) before anything changes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import make_params
from hypothesis import given, settings
from hypothesis import strategies as st

import adamkit

NAMES = adamkit.available()


def declared(name: str) -> dict:
    return adamkit.optimizer_class(name).declared_hypers()


def names_with(hyper: str) -> list[str]:
    return [n for n in NAMES if hyper in declared(n)]


def params() -> list[torch.Tensor]:
    return make_params(shapes=((3, 2), (4,)))


BAD_VALUES = [
    ("lr", -1.0, r"lr=-1\.0: must be a finite number >= 0"),
    ("lr", math.nan, r"lr=nan: must be a finite number >= 0"),
    ("lr", math.inf, r"lr=inf: must be a finite number >= 0"),
    ("lr", "0.1", r"lr='0\.1': must be a finite number >= 0"),
    ("eps", -1e-8, r"eps=-1e-08: must be a finite number >= 0"),
    ("weight_decay", -0.1, r"weight_decay=-0\.1: must be a finite number >= 0"),
    ("weight_decay_mode", "l1", r"weight_decay_mode='l1': accepted values are 'l2', 'decoupled'"),
    ("state_dtype", "int3", r"state_dtype='int3': accepted values are None, 'float32'"),
    ("maximize", 1, r"maximize=1: must be True or False"),
]


@pytest.mark.parametrize(("hyper", "value", "message"), BAD_VALUES)
def test_bad_hyperparameter_values_are_refused_with_the_name_and_range(
    hyper: str, value: object, message: str
) -> None:
    for name in names_with(hyper):
        cls = adamkit.optimizer_class(name)
        with pytest.raises((ValueError, TypeError), match=message) as info:
            cls(params(), **{hyper: value})
        assert cls.__name__ in str(info.value)


@pytest.mark.parametrize("name", names_with("betas"))
def test_betas_outside_the_unit_interval_or_of_the_wrong_count_are_refused(name: str) -> None:
    count = len(declared(name)["betas"].default)
    good = declared(name)["betas"].default
    with pytest.raises(ValueError, match=r"betas\[0\]=1\.0 \(beta1\): must be in \[0, 1\)"):
        adamkit.create(name, params(), betas=(1.0, *good[1:]))
    with pytest.raises(ValueError, match=r"betas\[1\]=-0\.5 \(beta2\): must be in \[0, 1\)"):
        adamkit.create(name, params(), betas=(good[0], -0.5, *good[2:]))
    with pytest.raises(ValueError, match=rf"got {count + 1} values, must be a tuple of {count}"):
        adamkit.create(name, params(), betas=(*good, 0.5))
    with pytest.raises(ValueError, match="must be a tuple"):
        adamkit.create(name, params(), betas=0.9)


def test_eps_mode_must_be_known() -> None:
    with pytest.raises(
        ValueError, match=r"eps_mode='eps_hat': accepted values are 'standard', 'hat'"
    ):
        adamkit.Adam(params(), eps_mode="eps_hat")


@pytest.mark.parametrize("name", NAMES)
def test_unknown_keyword_names_a_close_match(name: str) -> None:
    with pytest.raises(TypeError, match=r"unknown keyword argument 'learning_rte'") as info:
        adamkit.create(name, params(), learning_rte=0.1)
    with pytest.raises(TypeError, match=r"did you mean 'weight_decay'"):
        adamkit.create(name, params(), weight_decai=0.1)
    assert "Accepted: lr" in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_bad_params_are_refused(name: str) -> None:
    cls = adamkit.optimizer_class(name)
    with pytest.raises(ValueError, match="params is empty"):
        cls([])
    with pytest.raises(TypeError, match=r"got a single torch.*Tensor; pass \[tensor\]"):
        cls(torch.zeros(3, requires_grad=True))
    leaf = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="group 0, param 0 is not a leaf tensor"):
        cls([leaf * 2])
    with pytest.raises(TypeError, match=r"has dtype torch\.int64; only floating-point or complex"):
        cls([torch.zeros(3, dtype=torch.int64)])
    with pytest.raises(ValueError, match="already belongs to another param group"):
        cls([{"params": [leaf]}, {"params": [leaf]}])
    with pytest.raises(ValueError, match="appears twice in the same param group"):
        cls([leaf, leaf])
    with pytest.raises(TypeError, match=r"is a str, not a torch\.Tensor"):
        cls(["weights"])
    opt = cls([leaf])
    with pytest.raises(ValueError, match="already belongs to another param group"):
        opt.add_param_group({"params": [leaf]})
    with pytest.raises(ValueError, match=r"param group 1\): invalid lr=-2"):
        opt.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": -2})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("name", NAMES)
def test_sparse_gradients_are_refused_at_step_time_naming_the_optimizer(name: str) -> None:
    p = torch.zeros(4, 3, requires_grad=True)
    opt = adamkit.create(name, [p])
    p.grad = torch.eye(4, 3).to_sparse()
    with pytest.raises(
        RuntimeError, match=f"{type(opt).__name__} does not support sparse gradients"
    ):
        opt.step()
    assert torch.equal(p.detach(), torch.zeros(4, 3)) and not opt.state[p]


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_a_gradient_of_the_wrong_shape_is_refused_naming_group_and_param(name: str) -> None:
    first, second = torch.zeros(3, requires_grad=True), torch.zeros(4, 3, requires_grad=True)
    opt = adamkit.create(name, [first])
    opt.add_param_group({"params": [torch.zeros(2, requires_grad=True), second]})
    first.grad = torch.ones(3)
    second.grad = torch.ones(4, 3)
    second.grad.data = torch.ones(3, 4)  # torch checks the assignment, not a changed .data
    with pytest.raises(
        RuntimeError, match=r"param group 1, param 1 has shape \(3, 4\) but the parameter has"
    ):
        opt.step()
    assert torch.equal(first.detach(), torch.zeros(3)) and not opt.state[first]


def test_unknown_optimizer_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamww'; did you mean 'adamw'"):
        adamkit.create("adamww", params())
    with pytest.raises(ValueError, match="Available: adabelief, adam, adam_awd, adam_gc"):
        adamkit.create("nesterov", params())


def test_ademamix_schedulers_need_beta1() -> None:
    for horizon in ({"T_beta3": 100}, {"T_alpha": 100}):
        with pytest.raises(ValueError, match=r"AdEMAMix schedulers .* need beta1 > 0"):
            adamkit.AdEMAMix(params(), betas=(0.0, 0.999, 0.9999), **horizon)
    with pytest.raises(ValueError, match="beta3 scheduler needs beta3 > 0"):
        adamkit.AdEMAMix(params(), betas=(0.9, 0.999, 0.0), T_beta3=100)
    adamkit.AdEMAMix(params(), betas=(0.0, 0.999, 0.9999))  # no scheduler: fine


def test_rectify_threshold_must_keep_the_rectifier_real() -> None:
    with pytest.raises(ValueError, match=r"rectify_threshold=3\.0: must be a finite number >= 4"):
        adamkit.RAdam(params(), rectify_threshold=3.0)


def test_load_state_dict_refuses_a_mismatched_checkpoint_and_keeps_its_state() -> None:
    ps = params()
    opt = adamkit.Adam(ps)
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[ps[0]].items() if isinstance(v, torch.Tensor)}
    sd = opt.state_dict()
    bad_shape = {**sd, "state": {**sd["state"], 0: {**sd["state"][0], "exp_avg": torch.zeros(5)}}}
    with pytest.raises(
        ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(5,\), expected \(3, 2\)"
    ):
        opt.load_state_dict(bad_shape)
    bad_lr = {**sd, "param_groups": [{**sd["param_groups"][0], "lr": -1.0}]}
    with pytest.raises(ValueError, match=r"invalid lr=-1\.0"):
        opt.load_state_dict(bad_lr)
    with pytest.raises(ValueError, match="1 param groups, this optimizer 2"):
        adamkit.Adam([{"params": [ps[0]]}, {"params": [ps[1]]}]).load_state_dict(sd)
    for key, value in before.items():
        assert torch.equal(opt.state[ps[0]][key], value)


def _stepped(**hyper: object) -> tuple[list[torch.Tensor], adamkit.AdamkitOptimizer]:
    ps = make_params(torch.float32, [(4, 3), (5,)])
    opt = adamkit.AdamW(ps, **hyper)
    for i in range(2):
        for p in ps:
            p.grad = torch.full_like(p, 0.1 * (i + 1))
        opt.step()
    return ps, opt


def _set(entry: dict, key: str, value: object) -> None:
    entry[key] = value


# (name, hyperparameters, how the checkpoint's state of parameter 0 is spoilt, the error)
HOSTILE_CHECKPOINTS = [
    ("NaN moment", {}, lambda e: e["exp_avg"].__setitem__((0, 0), math.nan), "infinite or NaN"),
    ("infinite moment", {}, lambda e: e["exp_avg_sq"].fill_(math.inf), "infinite or NaN"),
    (
        "negative second moment",
        {},
        lambda e: e["exp_avg_sq"].__setitem__((1, 2), -1.0),
        "'exp_avg_sq' of parameter 0 has negative values",
    ),
    ("step not a number", {}, lambda e: _set(e, "step", "x"), "step='x', not an integer >= 0"),
    ("step infinite", {}, lambda e: _set(e, "step", math.inf), "step=inf, not an integer"),
    (
        "missing buffer",
        {},
        lambda e: e.pop("exp_avg"),
        r"has no 'exp_avg' \(it has \['exp_avg_sq', 'step'\]\)",
    ),
    (
        "integer buffer",
        {},
        lambda e: _set(e, "exp_avg", torch.zeros(4, 3, dtype=torch.int64)),
        "has dtype torch.int64; a buffer is stored in a floating dtype",
    ),
    (
        "8-bit codes without their block maxima",
        {"state_dtype": "int8"},
        lambda e: e.pop("exp_avg_absmax"),
        "holds 8-bit codes, which need 'exp_avg_absmax': 1 floating values",
    ),
    (
        "negative float16 scale",
        {"state_dtype": "float16"},
        lambda e: e["exp_avg_scale"].neg_(),
        r"\('exp_avg_scale'\) has negative values",
    ),
    (
        "Kahan compensation of another shape",
        {"state_dtype": "bfloat16", "state_rounding": "kahan"},
        lambda e: _set(e, "exp_avg_kahan", torch.zeros(12, dtype=torch.bfloat16)),
        "its compensation 'exp_avg_kahan' must match its shape and dtype",
    ),
]


@pytest.mark.parametrize(
    ("hyper", "spoil", "error"),
    [case[1:] for case in HOSTILE_CHECKPOINTS],
    ids=[case[0] for case in HOSTILE_CHECKPOINTS],
)
def test_a_hostile_checkpoint_is_refused_and_changes_nothing(
    hyper: dict, spoil: object, error: str
) -> None:
    _, opt = _stepped(**hyper)
    saved = copy.deepcopy(opt.state_dict())
    bad = copy.deepcopy(saved)
    spoil(bad["state"][0])  # type: ignore[operator]
    with pytest.raises(ValueError, match=f"AdamW.load_state_dict: .*{error}"):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            mine = after["state"][index][key]
            assert torch.equal(mine, value) if torch.is_tensor(value) else mine == value


def test_a_statistic_not_yet_set_may_be_nan_in_a_checkpoint() -> None:
    # AdamW-mini-SF's gradient-norm EMA is NaN until a finite gradient norm sets it; a first
    # step skipped for a non-finite gradient leaves it NaN, and that checkpoint loads.
    p = torch.nn.Parameter(torch.ones(3))
    opt = adamkit.AdamWMiniSF([p])
    p.grad = torch.full((3,), math.inf)
    opt.step()
    assert math.isnan(opt.state[p]["grad_norm_ema"].item())
    fresh = adamkit.AdamWMiniSF([torch.nn.Parameter(torch.ones(3))])
    fresh.load_state_dict(opt.state_dict())
    assert math.isnan(fresh.state[fresh.param_groups[0]["params"][0]]["grad_norm_ema"].item())


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans()))
def test_lr_validation_accepts_exactly_finite_nonnegative_numbers(value: object) -> None:
    ok = not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if ok:
        assert adamkit.AdamW(params(), lr=value).param_groups[0]["lr"] == value
    else:
        with pytest.raises(ValueError, match="AdamW: invalid lr"):
            adamkit.AdamW(params(), lr=value)


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.floats(-2, 2), st.floats(-2, 2)))
def test_beta_validation_accepts_exactly_the_unit_interval(betas: tuple[float, float]) -> None:
    ok = all(0 <= b < 1 for b in betas)
    if ok:
        adamkit.Adam(params(), betas=betas)
    else:
        with pytest.raises(ValueError, match="must be in \\[0, 1\\)"):
            adamkit.Adam(params(), betas=betas)
