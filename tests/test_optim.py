"""rsnorm.optim: recorded torch.optim trajectories, float64 references for every flag, state, errors."""

from __future__ import annotations

import numpy as np
import pytest

import rsnorm as rn
from conftest import golden_cases
from rsnorm import optim


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("optimizer"))
def test_matches_recorded_torch_optim(case, i, e):
    kw = case["kwargs"]
    params = [i["p0"].copy(), i["p1"].copy()]
    options = dict(kw["options"])
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    opt = getattr(optim, kw["cls"])(params, **options)
    tol = {"rtol": case["tol"]["rtol"], "atol": case["tol"]["atol"]}
    for s in range(kw["steps"]):
        opt.step([i[f"g{s}_0"], i[f"g{s}_1"]])
        for j in range(2):
            np.testing.assert_allclose(params[j], e[f"p_after{s}_{j}"], **tol, err_msg=f"step {s} param {j}")
    state = opt.state_dict()["state"]
    for key, want in e.items():
        if key.startswith("state"):
            j, name = int(key[5]), key.split("_", 1)[1]
            np.testing.assert_allclose(
                np.asarray(state[j][name]).reshape(want.shape), want, **tol, err_msg=key
            )


# ---------------------------------------------------------------- float64 references (torch/optim formulas)


def ref_step(name, o, p, g, st, t):
    """One single-tensor step of torch.optim's algorithm `name` in float64 NumPy; mutates p and st."""
    g = -g if o.get("maximize") else g.copy()
    wd = o.get("weight_decay", 0.0)
    if name == "SGD":
        if wd:
            g = g + wd * p
        if o.get("momentum", 0.0):
            buf = (
                g.copy()
                if "momentum_buffer" not in st
                else o["momentum"] * st["momentum_buffer"] + (1 - o.get("dampening", 0.0)) * g
            )
            st["momentum_buffer"] = buf
            g = g + o["momentum"] * buf if o.get("nesterov") else buf
        p -= o["lr"] * g
    elif name == "Adagrad":
        if wd:
            g = g + wd * p
        clr = o["lr"] / (1 + (t - 1) * o.get("lr_decay", 0.0))
        st["sum"] = st.get("sum", np.full_like(p, o.get("initial_accumulator_value", 0.0))) + g * g
        p -= clr * g / (np.sqrt(st["sum"]) + o.get("eps", 1e-10))
    elif name == "Adadelta":
        if wd:
            g = g + wd * p
        rho, eps = o.get("rho", 0.9), o.get("eps", 1e-6)
        sq = st.get("square_avg", np.zeros_like(p)) * rho + (1 - rho) * g * g
        delta = np.sqrt(st.get("acc_delta", np.zeros_like(p)) + eps) / np.sqrt(sq + eps) * g
        st["square_avg"], st["acc_delta"] = (
            sq,
            st.get("acc_delta", np.zeros_like(p)) * rho + (1 - rho) * delta * delta,
        )
        p -= o.get("lr", 1.0) * delta
    elif name == "RMSprop":
        if wd:
            g = g + wd * p
        a, eps = o.get("alpha", 0.99), o.get("eps", 1e-8)
        st["square_avg"] = st.get("square_avg", np.zeros_like(p)) * a + (1 - a) * g * g
        if o.get("centered"):
            st["grad_avg"] = st.get("grad_avg", np.zeros_like(p)) + (1 - a) * (
                g - st.get("grad_avg", np.zeros_like(p))
            )
            avg = np.sqrt(st["square_avg"] - st["grad_avg"] ** 2) + eps
        else:
            avg = np.sqrt(st["square_avg"]) + eps
        if o.get("momentum", 0.0):
            st["momentum_buffer"] = st.get("momentum_buffer", np.zeros_like(p)) * o["momentum"] + g / avg
            p -= o["lr"] * st["momentum_buffer"]
        else:
            p -= o["lr"] * g / avg
    else:  # Adam, AdamW
        b1, b2 = o.get("betas", (0.9, 0.999))
        lr, eps = o.get("lr", 1e-3), o.get("eps", 1e-8)
        if name == "AdamW":
            p *= 1 - lr * o.get("weight_decay", 1e-2)
        elif wd:
            g = g + wd * p
        st["exp_avg"] = st.get("exp_avg", np.zeros_like(p)) + (1 - b1) * (
            g - st.get("exp_avg", np.zeros_like(p))
        )
        st["exp_avg_sq"] = st.get("exp_avg_sq", np.zeros_like(p)) * b2 + (1 - b2) * g * g
        second = st["exp_avg_sq"]
        if o.get("amsgrad"):
            st["max_exp_avg_sq"] = second = np.maximum(st.get("max_exp_avg_sq", np.zeros_like(p)), second)
        denom = np.sqrt(second) / np.sqrt(1 - b2**t) + eps
        p -= lr / (1 - b1**t) * st["exp_avg"] / denom


CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2)),
    ("Adadelta", dict(lr=0.5, rho=0.8, weight_decay=0.01)),
    ("Adadelta", dict(maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5)),
    ("RMSprop", dict(lr=0.01, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
]


@pytest.mark.parametrize(("name", "options"), CONFIGS)
def test_matches_float64_reference_every_flag(rng, name, options):
    shapes = [(7,), (3, 40_000), (5, 4)]  # one tensor large enough to be split across tasks
    params = [rng.standard_normal(s) for s in shapes]
    ref = [p.copy() for p in params]
    opt = getattr(optim, name)(params, **options)
    ref_state = [{} for _ in params]
    for t in range(1, 6):
        grads = [rng.standard_normal(s) for s in shapes]
        opt.step(grads)
        for p, g, st in zip(ref, grads, ref_state, strict=True):
            ref_step(name, options, p, g, st, t)
    for got, want in zip(params, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)
    state = opt.state_dict()["state"]
    for j, st in enumerate(ref_state):
        for k, v in st.items():
            np.testing.assert_allclose(state[j][k], v, rtol=1e-11, atol=1e-12, err_msg=k)


def test_float32_params_and_lr_change_between_steps(rng):
    p32 = rng.standard_normal(100).astype(np.float32)
    ref = p32.astype(np.float64)
    opt = optim.Adam([p32], lr=0.1)
    st = {}
    for t in range(1, 4):
        g = rng.standard_normal(100).astype(np.float32)
        if t == 3:
            opt.param_groups[0]["lr"] = 0.01
        opt.step([g])
        ref_step("Adam", dict(lr=0.1 if t < 3 else 0.01), ref, g.astype(np.float64), st, t)
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, ref, rtol=1e-5, atol=1e-6)


def test_param_groups_have_their_own_options(rng):
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    a0, b0 = a.copy(), b.copy()
    opt = optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b]}], lr=0.1, momentum=0.0)
    g = np.ones(5)
    opt.step([g, g])
    np.testing.assert_allclose(a, a0 - 1.0)
    np.testing.assert_allclose(b, b0 - 0.1)
    sd = opt.state_dict()
    assert [grp["params"] for grp in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][0]["lr"] == 1.0 and sd["param_groups"][1]["lr"] == 0.1


def test_state_dict_round_trip_continues_identically(rng):
    shapes = [(6,), (2, 3)]
    p1 = [rng.standard_normal(s) for s in shapes]
    p2 = [p.copy() for p in p1]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(6)]
    o1 = optim.Adam(p1, lr=0.05, amsgrad=True)
    for g in grads[:3]:
        o1.step(g)
    saved = o1.state_dict()
    for p, q in zip(p2, p1, strict=True):
        p[...] = q
    o2 = optim.Adam(p2, lr=0.5)  # options come from the state dict
    o2.load_state_dict(saved)
    assert o2.param_groups[0]["lr"] == 0.05
    for g in grads[3:]:
        o1.step(g)
        o2.step(g)
    for a, b in zip(p1, p2, strict=True):
        np.testing.assert_array_equal(a, b)
    # SGD momentum buffers move too (PyTorch's SGD state has no step).
    q1, q2 = [rng.standard_normal(4)], [np.zeros(4)]
    s1 = optim.SGD(q1, lr=0.1, momentum=0.9)
    s1.step([np.ones(4)])
    assert set(s1.state_dict()["state"][0]) == {"momentum_buffer"}
    q2[0][...] = q1[0]
    s2 = optim.SGD(q2, lr=0.1, momentum=0.9)
    s2.load_state_dict(s1.state_dict())
    s1.step([np.ones(4)])
    s2.step([np.ones(4)])
    np.testing.assert_array_equal(q1[0], q2[0])
    s2.zero_state()
    assert s2.state_dict()["state"] == {}


def test_clip_grad_norm_standalone_and_fused(rng):
    grads = [rng.standard_normal(30) * 10, rng.standard_normal((4, 5)) * 10]
    total = np.sqrt(sum((g**2).sum() for g in grads))
    clipped = [g.copy() for g in grads]
    assert rn.optim.clip_grad_norm(clipped, 1.0) == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(np.sqrt(sum((g**2).sum() for g in clipped)), 1.0, rtol=1e-5)
    pa = [rng.standard_normal(30), rng.standard_normal((4, 5))]
    pb = [p.copy() for p in pa]
    optim.SGD(pa, lr=0.1).step(clipped)
    norm = optim.SGD(pb, lr=0.1).step(grads, clip_grad_norm=1.0)
    assert norm == pytest.approx(total, rel=1e-12)
    for a, b in zip(pa, pb, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-14)
    small = [np.full(3, 1e-3)]
    assert rn.optim.clip_grad_norm(small, 1.0) < 1.0
    np.testing.assert_array_equal(small[0], 1e-3)  # below the limit: unchanged


def test_nan_gradient_stays_in_its_parameter(rng):
    a, b = rng.standard_normal(4), rng.standard_normal(4)
    g = np.ones(4)
    bad = g.copy()
    bad[2] = np.nan
    optim.Adam([a, b], lr=0.1).step([bad, g])
    assert np.isnan(a[2]) and np.isfinite(np.delete(a, 2)).all() and np.isfinite(b).all()


def test_many_tensors_same_as_one_at_a_time(rng):
    shapes = [(50_000,)] * 20 + [(3,)] * 30
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    together = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    alone = [p.copy() for p in together]
    optim.AdamW(together, lr=0.01).step(grads)
    for p, g in zip(alone, grads, strict=True):
        optim.AdamW([p], lr=0.01).step([g])
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_array_equal(a, b)


class _Sub(np.ndarray):
    pass


def test_gradients_of_every_layout_step_like_plain_copies(rng):
    """Gradients that `step` can pass as given (plain, contiguous, aligned ndarrays owning their
    data, of their parameter's shape and dtype) are recognized in one call; any other kind takes the
    checks per tensor, and every kind steps exactly as a plain copy of itself."""
    from rsnorm import _rsnorm

    p = rng.standard_normal((6, 5))
    g = rng.standard_normal((6, 5))
    raw = np.zeros(g.nbytes + 1, np.uint8)
    misaligned = raw[1:].view(np.float64).reshape(6, 5)
    misaligned[...] = g
    wide = np.zeros((6, 10))
    wide[:, ::2] = g
    kinds = {
        "plain": (g.copy(), True),
        "view": (np.concatenate([g, g])[:6], False),
        "strided": (wide[:, ::2], False),
        "misaligned": (misaligned, False),
        "subclass": (g.copy().view(_Sub), False),
        "list": (g.tolist(), False),
        "other shape": (g.reshape(5, 6), False),
        "other dtype": (g.astype(np.float32), False),
    }
    for name, (grad, ready) in kinds.items():
        assert _rsnorm.optim_grads_ready([p], [grad]) is ready, name
    assert not _rsnorm.optim_grads_ready([p, p], [g.copy()])
    assert _rsnorm.optim_grads_ready([p, p.copy()], [g.copy(), g.copy()])
    for name, (grad, _) in kinds.items():
        if name.startswith("other"):
            with pytest.raises(ValueError, match=f"grads\\[0\\] has {name.split()[1]}"):
                optim.Adam([p.copy()]).step([grad])
            continue
        got, want = p.copy(), p.copy()
        optim.Adam([got], lr=0.1).step([grad])
        optim.Adam([want], lr=0.1).step([np.array(g)])
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_errors(rng):
    p = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="not C-contiguous"):
        optim.Adam([p.T])
    ro = p.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        optim.SGD([ro])
    with pytest.raises(ValueError, match="float32 or float64 numpy arrays, got ndarray of dtype int64"):
        optim.SGD([np.ones(3, np.int64)])
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])
    with pytest.raises(ValueError, match=r"invalid lr: -0\.1"):
        optim.Adam([p], lr=-0.1)
    with pytest.raises(ValueError, match=r"beta parameter at index 1: 1\.5"):
        optim.Adam([p], betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="nesterov momentum requires"):
        optim.SGD([p], nesterov=True)
    with pytest.raises(ValueError, match="invalid rho"):
        optim.Adadelta([p], rho=1.5)
    with pytest.raises(ValueError, match="initial_accumulator_value"):
        optim.Adagrad([p], initial_accumulator_value=-1)
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [p]}, {"params": [p]}])
    opt = optim.Adam([p])
    with pytest.raises(ValueError, match="1 parameters but 2 gradients"):
        opt.step([p, p])
    with pytest.raises(ValueError, match=r"grads\[0\] has shape \(4, 3\)"):
        opt.step([np.ones((4, 3))])
    with pytest.raises(ValueError, match=r"grads\[0\] has dtype float32"):
        opt.step([np.ones((3, 4), np.float32)])
    with pytest.raises(ValueError, match="clip_grad_norm must be >= 0"):
        opt.step([np.ones((3, 4))], clip_grad_norm=-1)
    with pytest.raises(ValueError, match="parameter groups do not match"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="invalid lr: -1"):
        opt.step([np.ones((3, 4))])


@pytest.mark.parametrize("make", [optim.Adam, optim.SGD, lambda ps: optim.SGD(ps, momentum=0.9)])
def test_a_refused_step_changes_no_state(rng, make):
    """The core refuses a gradient that is its parameter after the step created the state it
    needed: that state is dropped again and no step is counted, on a first step and a later one."""
    p, q = rng.standard_normal((3, 4)), rng.standard_normal(5)
    opt = make([p, q])
    with pytest.raises(ValueError, match=r"grads\[1\] shares memory with params\[1\]"):
        opt.step([np.ones((3, 4)), q])
    assert opt.state == {}
    opt.step([np.ones((3, 4)), np.ones(5)])
    before = {i: {k: np.copy(v) for k, v in st.items()} for i, st in opt.state.items()}
    with pytest.raises(ValueError, match=r"grads\[1\] shares memory with params\[1\]"):
        opt.step([np.ones((3, 4)), q])
    assert before.keys() == opt.state.keys() and all(st["step"] == 1 for st in opt.state.values())
    for i, st in opt.state.items():
        assert st.keys() == before[i].keys()
        for k, v in st.items():
            np.testing.assert_array_equal(v, before[i][k])


def test_options_are_read_by_the_core_from_the_group(rng):
    p = rng.standard_normal(4)
    # Numbers of any real type, flags by truth value, as PyTorch reads them.
    a, b = p.copy(), p.copy()
    optim.SGD([a], lr=np.float32(0.5), momentum=np.float64(0.5), nesterov=1).step([np.ones(4)])
    optim.SGD([b], lr=0.5, momentum=0.5, nesterov=True).step([np.ones(4)])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, p - 0.5 * 1.5)  # nesterov: g + momentum·buf = 1.5 on a first step
    with pytest.raises(ValueError, match=r"^SGD: lr must be a finite number, got 'fast'$"):
        optim.SGD([p], lr="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^RMSprop: alpha must be a finite number, got an int of 1101 bits"):
        optim.RMSprop([p], alpha=2**1100)
    with pytest.raises(ValueError, match=r"^Adam: betas must be a pair \(beta1, beta2\), got \(0\.9,\)$"):
        optim.Adam([p], betas=(0.9,))  # type: ignore[arg-type]
    opt = optim.Adagrad([p])
    del opt.param_groups[0]["lr_decay"]
    with pytest.raises(ValueError, match=r"^Adagrad: missing hyperparameter lr_decay$"):
        opt.step([np.ones(4)])
