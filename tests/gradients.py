"""Gradient checks shared by the test files: central finite differences and the tolerances of
recorded autograd cases."""

from __future__ import annotations

import numpy as np


def numeric_grad(loss, arr, h=1e-6):
    """Central differences of the scalar loss() with respect to every element of arr (in place)."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = loss()
        flat[i] = keep - h
        down = loss()
        flat[i] = keep
        gflat[i] = (up - down) / (2 * h)
    return grad


def check(analytic, numeric, name):
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=name)


def _tol(case):
    return {"rtol": case["tol"]["rtol"], "atol": case["tol"]["atol"]}
