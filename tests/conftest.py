"""Shared fixtures. CIFAR tests read $SLIMLAB_CIFAR10: missing data skips locally, fails on CI."""
import os

import pytest


@pytest.fixture(scope="session")
def cifar():
    from slimlab.data import ENV_VAR, load_cifar10
    src = os.environ.get(ENV_VAR)
    if not src or not os.path.exists(src):
        msg = f"{ENV_VAR} is not set to an existing CIFAR-10 source"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: CIFAR tests must run)")
        pytest.skip(msg)
    return load_cifar10(src, progress=False)
