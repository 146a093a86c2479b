import numpy as np
import pytest

import util  # noqa: F401  (paths and the library under test)


@pytest.fixture
def rng():
    return np.random.default_rng(2024)
