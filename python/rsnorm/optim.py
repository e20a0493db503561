"""Optimizers updating NumPy parameters in place, step for step equal to ``torch.optim``.

``opt = Adam(params, lr=1e-3)`` takes a list of writeable, C-contiguous float32/float64 arrays (or
PyTorch-style parameter groups: dicts with "params" and per-group options); ``opt.step(grads)``
applies one fused pass per tensor, all tensors of a group in parallel. ``state_dict()`` /
``load_state_dict()`` use PyTorch's names (step, exp_avg, exp_avg_sq, max_exp_avg_sq,
momentum_buffer, square_avg, acc_delta, sum, grad_avg) so state moves both ways.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _rsnorm

Array = npt.NDArray[Any]

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "clip_grad_norm"]


def clip_grad_norm(grads: Sequence[Array], max_norm: float) -> float:
    """Scales the gradients in place so their global L2 norm is at most max_norm (as
    ``torch.nn.utils.clip_grad_norm_``: coefficient max_norm / (norm + 1e-6), capped at 1).
    Returns the norm before clipping."""
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm: max_norm must be >= 0, got {max_norm}")
    norm = _rsnorm.grad_norm(list(grads))
    coef = min(1.0, max_norm / (norm + 1e-6))
    for g in grads:
        if not g.flags.writeable:
            raise ValueError("clip_grad_norm: a gradient is read-only")
        np.multiply(g, coef, out=g, casting="unsafe")
    return norm


class Optimizer(ABC):
    """Base class: parameter groups, lazily created state, the fused step and state dicts."""

    algorithm = ""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict[str, Any]] = []
        for group in groups:
            merged = {**self.defaults, **group, "params": list(group["params"])}
            for p in merged["params"]:
                self._check_param(p)
            self._validated(merged)  # invalid options fail at construction, naming the value
            self.param_groups.append(merged)
        ids = [id(p) for g in self.param_groups for p in g["params"]]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
        self.state: dict[int, dict[str, Any]] = {}

    def _check_param(self, p: Any) -> None:
        name = type(self).__name__
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            raise ValueError(
                f"{name}: parameters must be float32 or float64 numpy arrays, got {type(p).__name__}"
                f"{' of dtype ' + str(p.dtype) if isinstance(p, np.ndarray) else ''}"
            )
        if not p.flags.c_contiguous:
            raise ValueError(f"{name}: parameter of shape {p.shape} is not C-contiguous (updated in place)")
        if not p.flags.writeable:
            raise ValueError(f"{name}: parameter of shape {p.shape} is read-only")

    @abstractmethod
    def _hyper(self, group: dict[str, Any]) -> dict[str, float]:
        """The group's options as the floats the kernel takes."""

    def _validated(self, group: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
        """The group's kernel options, checked by the kernel (ValueError naming a bad value), and the
        names of the state arrays they need."""
        hyper = self._hyper(group)
        return hyper, _rsnorm.optim_validate(self.algorithm, hyper)

    def _initial_state(self, name: str, p: Array, group: dict[str, Any]) -> Array:
        return np.zeros_like(p)

    def _all_params(self) -> list[Array]:
        return [p for g in self.param_groups for p in g["params"]]

    def step(self, grads: Sequence[npt.ArrayLike], clip_grad_norm: float | None = None) -> float | None:
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
        checked = []
        for i, (p, g) in enumerate(zip(params, grads)):
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(
                    f"{type(self).__name__}.step: grads[{i}] has shape {g.shape}, parameter has {p.shape}"
                )
            if g.dtype != p.dtype:
                raise ValueError(
                    f"{type(self).__name__}.step: grads[{i}] has dtype {g.dtype}, parameter has {p.dtype}"
                )
            checked.append(np.ascontiguousarray(g))
        norm = None
        scale = 1.0
        if clip_grad_norm is not None:
            if clip_grad_norm < 0:
                raise ValueError(
                    f"{type(self).__name__}.step: clip_grad_norm must be >= 0, got {clip_grad_norm}"
                )
            norm = _rsnorm.grad_norm(checked)
            scale = min(1.0, clip_grad_norm / (norm + 1e-6))
        index = 0
        for group in self.param_groups:
            hyper, names = self._validated(group)
            states, steps, fresh = [], [], []
            for p in group["params"]:
                st = self.state.setdefault(index, {"step": 0})
                new = any(n not in st for n in names)
                for n in names:
                    if n not in st:
                        st[n] = self._initial_state(n, p, group)
                st["step"] += 1
                states.append([st[n] for n in names])
                steps.append(st["step"])
                fresh.append(new and "momentum_buffer" in names and self.algorithm == "sgd")
                index += 1
            group_grads = checked[index - len(group["params"]) : index]
            _rsnorm.optim_step(
                self.algorithm, hyper, group["params"], group_grads, states, steps, fresh, scale
            )
        return norm

    def zero_state(self) -> None:
        """Forgets all state (moments, buffers, step counts): the next step is a first step."""
        self.state.clear()

    def state_dict(self) -> dict[str, Any]:
        """PyTorch's layout: {"state": {index: {name: array}},
        "param_groups": [{..., "params": [indices]}]}."""
        state = {}
        for i, st in self.state.items():
            entry = {k: v for k, v in st.items() if k != "step"}
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
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)
        ):
            raise ValueError(f"{type(self).__name__}.load_state_dict: parameter groups do not match")
        params = self._all_params()
        new_state: dict[int, dict[str, Any]] = {}
        for key, entry in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for unknown parameter {key}")
            p = params[i]
            st: dict[str, Any] = {
                "step": int(np.asarray(entry.get("step", 0)).reshape(-1)[0]) if "step" in entry else 0
            }
            for name, value in entry.items():
                if name == "step":
                    continue
                if value is None:
                    continue
                arr = np.asarray(value)
                if arr.shape != p.shape:
                    raise ValueError(
                        f"{type(self).__name__}.load_state_dict: {name} of parameter {i} has shape "
                        f"{arr.shape}, expected {p.shape}"
                    )
                st[name] = np.array(arr, dtype=p.dtype, order="C")
            if not self._tracks_step() and "momentum_buffer" in st:
                st["step"] = 1
            new_state[i] = st
        for own, g in zip(self.param_groups, groups):
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

    def _hyper(self, g: dict[str, Any]) -> dict[str, float]:
        return {
            k: float(g[k]) for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")
        }

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

    def _hyper(self, g: dict[str, Any]) -> dict[str, float]:
        return {k: float(g[k]) for k in ("lr", "lr_decay", "weight_decay", "eps", "maximize")}

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

    def _hyper(self, g: dict[str, Any]) -> dict[str, float]:
        return {k: float(g[k]) for k in ("lr", "rho", "eps", "weight_decay", "maximize")}


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

    def _hyper(self, g: dict[str, Any]) -> dict[str, float]:
        keys = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize")
        return {k: float(g[k]) for k in keys}


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

    def _hyper(self, g: dict[str, Any]) -> dict[str, float]:
        beta1, beta2 = g["betas"]
        return {
            "lr": float(g["lr"]),
            "beta1": float(beta1),
            "beta2": float(beta2),
            "eps": float(g["eps"]),
            "weight_decay": float(g["weight_decay"]),
            "amsgrad": float(g["amsgrad"]),
            "maximize": float(g["maximize"]),
        }


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
