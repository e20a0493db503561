"""Optimizers updating NumPy parameters in place, step for step equal to ``torch.optim``.

``opt = Adam(params, lr=1e-3)`` takes a list of writeable, C-contiguous float32/float64 arrays (or
PyTorch-style parameter groups: dicts with "params" and per-group options); ``opt.step(grads)``
applies one fused pass per tensor, all tensors of a group in parallel. ``state_dict()`` /
``load_state_dict()`` use PyTorch's names (step, exp_avg, exp_avg_sq, max_exp_avg_sq,
momentum_buffer, square_avg, acc_delta, sum, grad_avg) so state moves both ways.

Parameters that are ``rsnorm.gpu`` arrays are updated on the device: gradients must be device arrays
too, the state is created there, one dispatch updates many tensors (multi-tensor, as PyTorch's fused
steps) with the step-dependent scalars computed in float64 on the host, and nothing comes back to the
host (``state_dict()`` copies the state out; ``load_state_dict`` takes host or device arrays).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _rsnorm, gpu
from ._backend import host_array

Array = npt.NDArray[Any]

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "clip_grad_norm"]


def clip_grad_norm(grads: Sequence[Any], max_norm: float) -> Any:
    """Scales the gradients in place so their global L2 norm is at most max_norm (as
    ``torch.nn.utils.clip_grad_norm_``: coefficient max_norm / (norm + 1e-6), capped at 1).
    Returns the norm before clipping: a float, or for ``rsnorm.gpu`` gradients a 0-d device array
    (computed and applied on the device, read only if the caller reads it)."""
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm: max_norm must be >= 0, got {max_norm}")
    grads = list(grads)
    if any(isinstance(g, gpu.Array) for g in grads):
        handles = [gpu._dev("clip_grad_norm", f"grads[{i}]", g) for i, g in enumerate(grads)]
        device_norm = _rsnorm.gpu_grad_norm(handles)
        _rsnorm.gpu_scale_grads(handles, float(max_norm), device_norm)
        return gpu.Array(device_norm)
    for i, g in enumerate(grads):
        if not isinstance(g, np.ndarray):
            raise TypeError(
                f"clip_grad_norm: grads[{i}] must be a numpy.ndarray (scaled in place), "
                f"got {type(g).__name__}"
            )
        if not g.flags.writeable:
            raise ValueError(f"clip_grad_norm: grads[{i}] is read-only")
    norm = _rsnorm.grad_norm(grads)
    coef = min(1.0, max_norm / (norm + 1e-6))
    for g in grads:
        np.multiply(g, coef, out=g, casting="unsafe")
    return norm


def _byte_range(a: Array) -> tuple[int, int]:
    """[start, end) of the bytes a C-contiguous array holds."""
    start = a.__array_interface__["data"][0]
    return start, start + a.nbytes


def _check_no_overlap(name: str, params: Sequence[Array], grads: Sequence[Array]) -> None:
    """Parameters are updated in place, once each: no two may share memory (the overlap would be
    updated twice), nor may a gradient share memory with a parameter (it would change while read).
    One sort of the byte ranges; NumPy's exact test decides where ranges touch."""
    spans = sorted(
        [(*_byte_range(p), "parameter", i) for i, p in enumerate(params) if p.size]
        + [(*_byte_range(g), "gradient", i) for i, g in enumerate(grads) if g.size]
    )
    arrays = {"parameter": params, "gradient": grads}
    open_spans: list[tuple[int, int, str, int]] = []
    for span in spans:
        open_spans = [o for o in open_spans if o[1] > span[0]]
        for other in open_spans:
            if "parameter" not in (span[2], other[2]):
                continue  # gradients are only read: they may overlap each other
            a, b = arrays[other[2]][other[3]], arrays[span[2]][span[3]]
            if np.shares_memory(a, b):
                raise ValueError(
                    f"{name}: {other[2]} {other[3]} (shape {a.shape}) and {span[2]} {span[3]} "
                    f"(shape {b.shape}) share memory; parameters are updated in place, so each must "
                    "have memory of its own"
                )
        open_spans.append(span)


class Optimizer:
    """Base class: parameter groups, lazily created state, the fused step and state dicts. A
    subclass names its core `algorithm`; the core reads the options it needs from each group."""

    algorithm = ""
    # Whether the parameters are rsnorm.gpu arrays (the first one decides); None before it is seen.
    _device: bool | None
    _params_own_data: bool

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self._device = None
        self.defaults = dict(defaults)
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = []
        for i, group in enumerate(groups):
            if not isinstance(group, dict) or "params" not in group:
                raise ValueError(
                    f"{type(self).__name__}: parameter group {i} must be a dict with a 'params' list, "
                    f"got {type(group).__name__}{' without params' if isinstance(group, dict) else ''}"
                )
            merged = {**self.defaults, **group, "params": list(group["params"])}
            for p in merged["params"]:
                self._check_param(p)
            self._validated(merged)  # invalid options fail at construction, naming the value
            self.param_groups.append(merged)
        ids = [id(p) for g in self.param_groups for p in g["params"]]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
        params = self._all_params()
        if self._device:
            # Device memory is checked by the step itself (parameters, state and gradients).
            self._params_own_data = True
        else:
            _check_no_overlap(type(self).__name__, params, [])
            # Fresh (data-owning) gradients cannot overlap parameters that own their data either:
            # then step() needs no overlap check.
            self._params_own_data = all(p.flags.owndata for p in params)
        self.state: dict[int, dict[str, Any]] = {}

    def _check_param(self, p: Any) -> None:
        name = type(self).__name__
        # The first parameter decides: all on the GPU, or all in host memory.
        on_device = isinstance(p, gpu.Array)
        if self._device is None:
            self._device = on_device
        device = self._device
        if device != on_device:
            raise TypeError(
                f"{name}: parameters on the GPU and in host memory in one optimizer; move them to one "
                "place (rsnorm.gpu.asarray, or .numpy())"
            )
        if device:
            if p.dtype.kind != "f":
                raise ValueError(f"{name}: parameters must be floating-point, got dtype {p.dtype}")
            return
        if not isinstance(p, np.ndarray):
            host_array(name, "params", p)  # TypeError for an array of another backend
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            raise ValueError(
                f"{name}: parameters must be float32 or float64 numpy arrays, got {type(p).__name__}"
                f"{' of dtype ' + str(p.dtype) if isinstance(p, np.ndarray) else ''}"
            )
        if not p.flags.c_contiguous:
            raise ValueError(f"{name}: parameter of shape {p.shape} is not C-contiguous (updated in place)")
        if not p.flags.writeable:
            raise ValueError(f"{name}: parameter of shape {p.shape} is read-only")

    def _validated(self, group: dict[str, Any]) -> list[str]:
        """The names of the state arrays the group's options need, once the core has read and
        checked them (ValueError naming a bad value)."""
        try:
            return _rsnorm.optim_validate(self.algorithm, group)
        except ValueError as exc:
            raise ValueError(f"{type(self).__name__}: {exc}") from None

    def _initial_state(self, name: str, p: Array, group: dict[str, Any]) -> Array:
        return np.zeros_like(p)

    def _new_state(self, name: str, p: Any, group: dict[str, Any]) -> Any:
        if not self._device:
            return self._initial_state(name, p, group)
        host = self._initial_state(name, np.zeros(p.shape, p.dtype), group)
        return gpu.asarray(host)

    def _all_params(self) -> list[Array]:
        return [p for g in self.param_groups for p in g["params"]]

    def step(
        self, grads: Sequence[npt.ArrayLike], clip_grad_norm: float | None = None
    ) -> float | gpu.Array | None:
        """Updates every parameter in place from its gradient (same order as the parameters).

        With ``clip_grad_norm=max_norm`` the gradients are first scaled as
        :func:`clip_grad_norm` would, fused into the step (the arrays passed are not modified);
        the pre-clipping norm is returned."""
        params = self._all_params()
        grads = list(grads)
        if len(grads) != len(params):
            raise ValueError(
                f"{type(self).__name__}.step: {len(params)} parameters but {len(grads)} gradients"
            )
        checked: list[Any] = []
        given: list[Any] = list(grads)
        # Per tensor this loop and the state loop below are the Python cost of a step (200 small
        # tensors: 2.4 µs each before the plain-ndarray shortcuts): keep them lean. Gradients that
        # the loop would pass unchanged, and that own their data, are recognized in one call.
        device, owned = self._device, self._params_own_data
        if not device and owned and _rsnorm.optim_grads_ready(params, given):
            checked = given
        else:
            for i, (p, g) in enumerate(zip(params, given, strict=True)):
                if device:
                    gpu._dev(f"{type(self).__name__}.step", f"grads[{i}]", g)
                elif type(g) is not np.ndarray:
                    g = host_array(f"{type(self).__name__}.step", f"grads[{i}]", g)
                if g.shape != p.shape:
                    raise ValueError(
                        f"{type(self).__name__}.step: grads[{i}] has shape {g.shape}, parameter has {p.shape}"
                    )
                if g.dtype != p.dtype:
                    raise ValueError(
                        f"{type(self).__name__}.step: grads[{i}] has dtype {g.dtype}, parameter has {p.dtype}"
                    )
                # Host gradients contiguous and aligned (a copy if not); device arrays always are.
                if not device:
                    flags = g.flags
                    if not (flags.c_contiguous and flags.aligned):
                        g = np.require(g, requirements=["C", "A"])
                        flags = g.flags
                    owned = owned and flags.owndata
                checked.append(g)
        if not (device or owned):
            _check_no_overlap(f"{type(self).__name__}.step", params, checked)
        norm: Any = None
        scale = 1.0
        if clip_grad_norm is not None:
            if clip_grad_norm < 0:
                raise ValueError(
                    f"{type(self).__name__}.step: clip_grad_norm must be >= 0, got {clip_grad_norm}"
                )
            if self._device:
                norm = _rsnorm.gpu_grad_norm([g._a for g in checked])
            else:
                norm = _rsnorm.grad_norm(checked)
                scale = min(1.0, clip_grad_norm / (norm + 1e-6))
        index = 0
        for group in self.param_groups:
            names = self._validated(group)
            sgd_buffer = "momentum_buffer" in names and self.algorithm == "sgd"
            states, steps, fresh = [], [], []
            # The state a step creates, dropped again if the step refuses its arguments.
            created: list[tuple[int, list[str]]] = []
            first = index
            for p in group["params"]:
                st = self.state.get(index)
                if st is None:
                    st = self.state[index] = {"step": 0}
                try:  # every state array there: all but a tensor's first step
                    states.append([st[n] for n in names])
                    fresh.append(False)
                except KeyError:
                    new = [n for n in names if n not in st]
                    for n in new:
                        st[n] = self._new_state(n, p, group)
                    created.append((index, new))
                    states.append([st[n] for n in names])
                    fresh.append(sgd_buffer)
                steps.append(st["step"] + 1)
                index += 1
            group_grads = checked[first:index]
            try:
                self._group_step(group, group_grads, states, steps, fresh, scale, clip_grad_norm, norm)
            except Exception:
                for i, new in created:
                    for n in new:
                        del self.state[i][n]
                for i in range(first, index):
                    if self.state[i] == {"step": 0}:
                        del self.state[i]
                raise
            for i in range(first, index):
                self.state[i]["step"] += 1
        if self._device and norm is not None:
            return gpu.Array(norm)
        return norm

    def _group_step(
        self,
        group: dict[str, Any],
        grads: list[Any],
        states: list[list[Any]],
        steps: list[int],
        fresh: list[bool],
        scale: float,
        max_norm: float | None,
        norm: Any,
    ) -> None:
        if self._device:
            _rsnorm.gpu_optim_step(
                self.algorithm,
                group,
                [p._a for p in group["params"]],
                [g._a for g in grads],
                [[s._a for s in st] for st in states],
                steps,
                fresh,
                None if norm is None else (float(max_norm or 0.0), norm),
            )
        else:
            tensors = dict(params=group["params"], grads=grads, states=states, steps=steps, fresh=fresh)
            _rsnorm.optim_step(self.algorithm, group, tensors, scale)

    def zero_state(self) -> None:
        """Forgets all state (moments, buffers, step counts): the next step is a first step."""
        self.state.clear()

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's layout: {"state": {index: {name: array}},
        "param_groups": [{..., "params": [indices]}]}."""
        state = {}
        for i, st in self.state.items():
            entry = {k: gpu._to_numpy(v) for k, v in st.items() if k != "step"}
            if self._tracks_step():
                entry = {"step": np.array(float(st["step"])), **entry}
            state[i] = entry
        groups, start = [], 0
        for g in self.param_groups:
            groups.append(
                {
                    **{k: v for k, v in g.items() if k != "params"},
                    "params": list(range(start, start + len(g["params"]))),
                }
            )
            start += len(g["params"])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Loads a state dict from :meth:`state_dict` or from PyTorch (tensors converted to arrays)."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError(
                f"{where}: expected a dict with 'state' and 'param_groups', got {state_dict!r:.80}"
            )
        groups = state_dict["param_groups"]
        if not isinstance(groups, (list, tuple)) or not all(
            isinstance(g, dict) and "params" in g for g in groups
        ):
            raise ValueError(f"{where}: param_groups must be a list of dicts with 'params'")
        if not isinstance(state_dict["state"], dict):
            raise ValueError(f"{where}: state must be a dict of per-parameter dicts")
        if len(groups) != len(self.param_groups) or any(
            len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups, strict=True)
        ):
            raise ValueError(f"{where}: parameter groups do not match")
        params = self._all_params()
        new_state: dict[int, dict[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            try:
                i = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: state key {key!r} is not a parameter index") from None
            if not isinstance(entry, dict):
                raise ValueError(
                    f"{where}: state of parameter {key} must be a dict, got {type(entry).__name__}"
                )
            if not 0 <= i < len(params):
                raise ValueError(f"{where}: state for unknown parameter {key}")
            p = params[i]
            st: dict[str, Any] = {
                "step": int(np.asarray(entry.get("step", 0)).reshape(-1)[0]) if "step" in entry else 0
            }
            for name, value in entry.items():
                if name == "step":
                    continue
                if value is None:
                    continue
                arr = np.asarray(gpu._to_numpy(value))
                if arr.shape != p.shape:
                    raise ValueError(
                        f"{where}: {name} of parameter {i} has shape {arr.shape}, expected {p.shape}"
                    )
                st[name] = np.array(arr, dtype=p.dtype, order="C")
                if self._device:
                    st[name] = gpu.asarray(st[name])
            if not self._tracks_step() and "momentum_buffer" in st:
                st["step"] = 1
            new_state[i] = st
        for own, g in zip(self.param_groups, groups, strict=True):
            for k, v in g.items():
                if k != "params":
                    own[k] = tuple(v) if k == "betas" else v
        self.state = new_state

    def _tracks_step(self) -> bool:
        return True


class SGD(Optimizer):
    """``torch.optim.SGD``: momentum, dampening, Nesterov, weight decay, maximize."""

    algorithm = "sgd"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                dampening=dampening,
                weight_decay=weight_decay,
                nesterov=nesterov,
                maximize=maximize,
            ),
        )

    def _tracks_step(self) -> bool:
        return False


class Adagrad(Optimizer):
    """``torch.optim.Adagrad``: lr / (1 + (t − 1)·lr_decay) · g / (√Σg² + eps)."""

    algorithm = "adagrad"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        if initial_accumulator_value < 0:
            raise ValueError(f"invalid initial_accumulator_value: {initial_accumulator_value} (must be >= 0)")
        super().__init__(
            params,
            dict(
                lr=lr,
                lr_decay=lr_decay,
                weight_decay=weight_decay,
                initial_accumulator_value=initial_accumulator_value,
                eps=eps,
                maximize=maximize,
            ),
        )

    def _initial_state(self, name: str, p: Array, group: dict[str, Any]) -> Array:
        return np.full_like(p, group["initial_accumulator_value"])


class Adadelta(Optimizer):
    """``torch.optim.Adadelta``: note PyTorch's global ``lr`` (default 1.0) multiplies the update."""

    algorithm = "adadelta"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))


class RMSprop(Optimizer):
    """``torch.optim.RMSprop``: alpha, eps (outside the square root), momentum, centered."""

    algorithm = "rmsprop"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            dict(
                lr=lr,
                alpha=alpha,
                eps=eps,
                weight_decay=weight_decay,
                momentum=momentum,
                centered=centered,
                maximize=maximize,
            ),
        )


class Adam(Optimizer):
    """``torch.optim.Adam``: weight decay added to the gradient (L2); eps outside √v̂; amsgrad."""

    algorithm = "adam"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            dict(
                lr=lr,
                betas=tuple(betas),
                eps=eps,
                weight_decay=weight_decay,
                amsgrad=amsgrad,
                maximize=maximize,
            ),
        )


class AdamW(Adam):
    """``torch.optim.AdamW``: decoupled weight decay, p ← p·(1 − lr·wd) before the Adam update."""

    algorithm = "adamw"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
