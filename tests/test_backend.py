"""The backend seam: public functions are typed Python functions dispatching on their arrays' type;
lazy or device arrays without a backend are refused, never computed behind the caller's back."""

from __future__ import annotations

import inspect
import types

import numpy as np
import pytest
from boxed import Boxed, calls

import rsnorm as rn
from rsnorm import _backend

QUERIES = {"get_num_threads", "set_num_threads", "simd_level", "show_config"}
PUBLIC = sorted(
    name for name in rn.__all__ if isinstance(getattr(rn, name), types.FunctionType) and name not in QUERIES
)


def test_every_public_function_is_a_documented_python_function():
    for name in rn.__all__:
        fn = getattr(rn, name)
        if not callable(fn) or isinstance(fn, type):
            continue  # data (MOMENTS) and exception classes
        assert isinstance(fn, types.FunctionType), name
        assert fn.__name__ == name and len(inspect.getdoc(fn) or "") > 20, name
        assert fn.__module__.startswith("rsnorm."), name
    assert len(PUBLIC) == 45
    sig = inspect.signature(rn.layer_norm)
    assert list(sig.parameters) == ["x", "normalized_shape", "weight", "bias", "eps", "out", "return_stats"]
    assert sig.parameters["out"].kind is inspect.Parameter.KEYWORD_ONLY


def ones(*shape):
    return np.ones(shape)


# One call of every public function, its main array given as `x` (1-D for wasserstein_1d).
CALLS = {
    "add_layer_norm": lambda x: rn.add_layer_norm(x, ones(4, 8)),
    "add_layer_norm_backward": lambda x: rn.add_layer_norm_backward(x, ones(4, 8), ones(4), ones(4)),
    "add_rms_norm": lambda x: rn.add_rms_norm(x, ones(4, 8)),
    "add_rms_norm_backward": lambda x: rn.add_rms_norm_backward(x, ones(4, 8), ones(4)),
    "aic": lambda x: rn.aic(x, 2),
    "batch_norm": lambda x: rn.batch_norm(x, training=True),
    "batch_norm_backward": lambda x: rn.batch_norm_backward(x, ones(4, 8), ones(8), ones(8)),
    "bic": lambda x: rn.bic(x, 2, 10),
    "cosine_linear": lambda x: rn.cosine_linear(x, ones(3, 8)),
    "cosine_linear_backward": lambda x: rn.cosine_linear_backward(x, ones(4, 8), ones(3, 8)),
    "cross_entropy": lambda x: rn.cross_entropy(x, ones(4, 8)),
    "cross_entropy_with_logits": lambda x: rn.cross_entropy_with_logits(x, np.zeros(4, np.int64)),
    "cross_entropy_with_logits_backward": lambda x: rn.cross_entropy_with_logits_backward(
        1.0, x, np.zeros(4, np.int64)
    ),
    "entropy": lambda x: rn.entropy(x),
    "group_norm": lambda x: rn.group_norm(x, 2),
    "group_norm_backward": lambda x: rn.group_norm_backward(
        x, ones(4, 8), ones(4, 2), ones(4, 2), num_groups=2
    ),
    "instance_norm": lambda x: rn.instance_norm(x),
    "instance_norm_backward": lambda x: rn.instance_norm_backward(x, ones(4, 8), ones(4), ones(4)),
    "js_distance": lambda x: rn.js_distance(x, ones(4, 8)),
    "js_divergence": lambda x: rn.js_divergence(x, ones(4, 8)),
    "kl_div": lambda x: rn.kl_div(x, ones(4, 8)),
    "l2_normalize": lambda x: rn.l2_normalize(x),
    "l2_normalize_backward": lambda x: rn.l2_normalize_backward(x, ones(4, 8)),
    "normalize": lambda x: rn.normalize(x, 1.0, 0),
    "normalize_backward": lambda x: rn.normalize_backward(x, ones(4, 8), 1.0, 0),
    "layer_norm": lambda x: rn.layer_norm(x),
    "layer_norm_backward": lambda x: rn.layer_norm_backward(x, ones(4, 8), ones(4), ones(4)),
    "local_response_norm": lambda x: rn.local_response_norm(x, 3),
    "log_softmax": lambda x: rn.log_softmax(x),
    "log_softmax_backward": lambda x: rn.log_softmax_backward(x, ones(4, 8)),
    "merge_moments": lambda x: rn.merge_moments((x, x, x), (ones(8), ones(8), ones(8))),
    "moments": lambda x: rn.moments(x),
    "nll_loss": lambda x: rn.nll_loss(x, np.zeros(4, np.int64)),
    "partial_moments": lambda x: rn.partial_moments(x),
    "merge_partials": lambda x: rn.merge_partials([x]),
    "apply_statistics": lambda x: rn.apply_statistics(x, 0.0, 1.0),
    "rms_norm": lambda x: rn.rms_norm(x),
    "rms_norm_backward": lambda x: rn.rms_norm_backward(x, ones(4, 8), ones(4)),
    "selu": lambda x: rn.selu(x),
    "selu_backward": lambda x: rn.selu_backward(x, ones(4, 8)),
    "softmax": lambda x: rn.softmax(x),
    "softmax_backward": lambda x: rn.softmax_backward(x, ones(4, 8)),
    "wasserstein_1d": lambda x: rn.wasserstein_1d(x[0], ones(8)),
    "weight_norm": lambda x: rn.weight_norm(x, ones(4)),
    "weight_norm_backward": lambda x: rn.weight_norm_backward(x, ones(4, 8), ones(4)),
}
CALLS.update(
    {
        "layer_norm weight": lambda w: rn.layer_norm(ones(4, 8), 8, w[0]),
        "batch_norm running_mean": lambda m: rn.batch_norm(ones(4, 8), m[0], ones(8)),
    }
)


def test_the_table_covers_every_public_function():
    assert {name.split()[0] for name in CALLS} == set(PUBLIC)


@pytest.fixture
def lazy():
    """A dask array and the list its blocks append to when computed."""
    da = pytest.importorskip("dask.array")
    computed: list[int] = []

    def mark(block):
        computed.append(1)
        return block

    x = da.from_array(np.abs(np.random.default_rng(0).standard_normal((4, 8))) + 0.5, chunks=(2, 8))
    x = x.map_blocks(mark, dtype=x.dtype)
    computed.clear()  # map_blocks ran it once on an empty block, for the output's type
    x.compute()
    assert len(computed) == 2  # the marker works: one call per chunk
    computed.clear()
    return x, computed


@pytest.fixture
def without_dask_backend(monkeypatch):
    """The seam as it is before ``import rsnorm.dask`` (the test suite imports it)."""
    kept = {k: v for k, v in _backend._registered.items() if v.name != "dask"}
    monkeypatch.setattr(_backend, "_registered", kept)
    monkeypatch.setattr(_backend, "_resolved", {})


@pytest.mark.parametrize("name", sorted(CALLS))
def test_dask_arrays_are_refused_without_being_computed(lazy, without_dask_backend, name):
    x, computed = lazy
    op = name.split()[0]
    with pytest.raises(
        TypeError,
        match=rf"^{op}: argument '\w+': dask\.array\.core\.Array has no rsnorm "
        r"backend registered: import rsnorm\.dask",
    ):
        CALLS[name](x)
    assert computed == []


LAYERS = {
    "LayerNorm": lambda: rn.nn.LayerNorm(8),
    "RMSNorm": lambda: rn.nn.RMSNorm(8),
    "BatchNorm": lambda: rn.nn.BatchNorm(4, axis=0),
    "InstanceNorm": lambda: rn.nn.InstanceNorm(8),
    "GroupNorm": lambda: rn.nn.GroupNorm(2, 8),
    "LocalResponseNorm": lambda: rn.nn.LocalResponseNorm(3),
    "WeightNormLinear": lambda: rn.nn.WeightNormLinear(8, 3),
    "CosineLinear": lambda: rn.nn.CosineLinear(8, 3),
    "SequenceBatchNorm": lambda: rn.nn.SequenceBatchNorm(8, 2),
}


def test_the_layer_table_covers_every_layer():
    layers = {n for n in rn.nn.__all__ if n != "Module"}
    assert set(LAYERS) == layers


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_refuse_dask_arrays_and_keep_their_state(lazy, without_dask_backend, name):
    x, computed = lazy
    layer = LAYERS[name]()
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    with pytest.raises(TypeError, match=r"dask\.array\.core\.Array has no rsnorm backend registered"):
        layer(x)
    assert computed == []
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_optimizers_refuse_dask_parameters_and_gradients(lazy, without_dask_backend):
    x, computed = lazy
    with pytest.raises(TypeError, match=r"^SGD: argument 'params': dask\.array\.core\.Array has no rsnorm"):
        rn.optim.SGD([x])
    p = np.ones((4, 8))
    with pytest.raises(TypeError, match=r"^Adam\.step: argument 'grads\[0\]': dask\.array\.core\.Array"):
        rn.optim.Adam([p]).step([x])
    np.testing.assert_array_equal(p, 1.0)
    assert computed == []


def test_a_registered_backend_receives_the_call_and_returns_its_arrays():
    x = np.random.default_rng(1).standard_normal((3, 8))
    calls.clear()
    y = rn.layer_norm(Boxed(x), 8, np.ones(8), eps=1e-3)  # a host weight beside a boxed x
    assert calls == ["layer_norm"] and isinstance(y, Boxed)
    np.testing.assert_array_equal(y.data, rn.layer_norm(x, 8, np.ones(8), eps=1e-3))
    y, mean, rstd = rn.layer_norm(x, weight=Boxed(np.ones(8)), return_stats=True)  # any argument
    assert all(isinstance(a, Boxed) for a in (y, mean, rstd)) and calls[-1] == "layer_norm"
    count, _, _ = rn.merge_moments(rn.moments(x, 0), (Boxed(np.ones(8, np.int64)), x[0], x[1]))
    assert calls[-1] == "merge_moments" and isinstance(count, Boxed)
    names = [b.name for b in _backend.backends()]
    assert names[0] == "numpy" and "boxed" in names and "gpu" in names


def test_errors_of_a_backend_name_the_function():
    with pytest.raises(ValueError, match=r"^layer_norm: eps must be a finite number >= 0, got -1"):
        rn.layer_norm(Boxed(np.ones((2, 4))), eps=-1.0)


def test_two_backends_in_one_call_and_missing_functions_are_type_errors(monkeypatch):
    class Other:
        pass

    partial = _backend.Backend("partial", types.SimpleNamespace(), np.asarray, lambda a: a)
    monkeypatch.setattr(_backend, "_registered", {**_backend._registered, Other: partial})
    monkeypatch.setattr(_backend, "_resolved", {})
    with pytest.raises(
        TypeError,
        match=r"^layer_norm: arrays of two backends in one call \(boxed and partial, "
        r"argument 'weight'\)",
    ):
        rn.layer_norm(Boxed(np.ones((2, 4))), 4, Other())
    with pytest.raises(TypeError, match=r"^softmax: the partial backend has no softmax"):
        rn.softmax(Other())


def test_registering_a_type_takes_effect_after_it_was_seen_as_host(monkeypatch):
    class Late(np.ndarray):
        pass

    x = np.ones((2, 4)).view(Late)
    assert isinstance(rn.softmax(x), np.ndarray)  # an ndarray subclass: host memory
    monkeypatch.setattr(_backend, "_registered", dict(_backend._registered))
    monkeypatch.setattr(_backend, "_resolved", dict(_backend._resolved))
    late = types.SimpleNamespace(softmax=lambda x, axis=-1, *, out=None: ("late", axis))
    _backend.register(Late, _backend.Backend("late", late, np.asarray, lambda a: a))
    assert rn.softmax(x, 0) == ("late", 0)


def test_host_conversions_still_accept_lists_scalars_and_array_likes():
    class ArrayLike:
        def __array__(self, dtype=None, copy=None):
            return np.arange(8.0).reshape(2, 4)

    want = rn.softmax(np.arange(8.0).reshape(2, 4))
    np.testing.assert_array_equal(rn.softmax(ArrayLike()), want)
    np.testing.assert_array_equal(rn.softmax([[0.0, 1, 2, 3], [4, 5, 6, 7]]), want)
    np.testing.assert_array_equal(rn.softmax(memoryview(np.arange(8.0).reshape(2, 4))), want)
