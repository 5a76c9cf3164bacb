"""The one set of argument validators: what each accepts, and that errors name the argument and the range."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from slimlab import checks as K


def test_check_int_accepts_ints_and_numpy_ints_only():
    assert K.check_int(3, "n", 1, 5) == 3 and K.check_int(np.int64(2), "n") == 2
    for bad in (True, 2.0, "3", None):
        with pytest.raises(TypeError, match="n must be an int"):
            K.check_int(bad, "n")
    with pytest.raises(ValueError, match=r"bits must be in 1\.\.16, got 17"):
        K.check_int(17, "bits", 1, 16)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        K.check_int(0, "k", 1)
    with pytest.raises(ValueError, match="k must be <= 3, got 4"):
        K.check_int(4, "k", hi=3)


def test_check_number_bounds_open_and_closed():
    assert K.check_number(0, "x", 0, 1) == 0.0
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        K.check_number(0, "x", 0, 1, lo_open=True)
    with pytest.raises(ValueError, match=r"in \[0, inf\]"):
        K.check_number(-1, "x", lo=0)
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            K.check_number(bad, "x")
    with pytest.raises(TypeError):
        K.check_number(True, "x")


def test_check_fraction_and_choice():
    assert K.check_fraction(0.5, "s") == 0.5
    with pytest.raises(ValueError, match=r"s must be a finite number in \[0, 1\)"):
        K.check_fraction(1.0, "s")
    assert K.check_fraction(1.0, "s", allow_one=True) == 1.0
    assert K.check_choice("l1", ("l1", "apoz"), "method") == "l1"
    with pytest.raises(ValueError, match=r"method must be one of \('l1', 'apoz'\), got 'x'"):
        K.check_choice("x", ("l1", "apoz"), "method")


def test_check_tensor_and_model():
    x = torch.ones(2, 3)
    assert K.check_tensor(x, "w", floating=True, dims=2, finite=True) is x
    with pytest.raises(TypeError, match="w must be a torch.Tensor"):
        K.check_tensor([1.0], "w")
    with pytest.raises(TypeError, match="floating-point"):
        K.check_tensor(torch.ones(2, dtype=torch.int64), "w", floating=True)
    with pytest.raises(ValueError, match="must have 4 dims"):
        K.check_tensor(x, "w", dims=4)
    with pytest.raises(ValueError, match="is empty"):
        K.check_tensor(torch.ones(0), "w")
    with pytest.raises(ValueError, match=r"holds 1 NaN or infinite"):
        K.check_tensor(torch.tensor([1.0, float("nan")]), "w", finite=True)
    m = nn.Linear(2, 2)
    assert K.check_model(m) is m
    with pytest.raises(TypeError, match="teacher must be an nn.Module"):
        K.check_model(object(), "teacher")
