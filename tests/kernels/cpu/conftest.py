"""The CPU kernels are called directly here: do the set-up the backend does first."""
import pytest

from fastdnn.kernels.cpu import blas


@pytest.fixture(autouse=True, scope="session")
def prepared_blas():
    blas.prepare()
