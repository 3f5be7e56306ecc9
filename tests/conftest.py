from pathlib import Path

import numpy as np
import pytest

_KINDS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test is marked by where it lives: ``tests/unit`` -> ``unit``, ``tests/integration`` ->
    ``integration`` (``make test-fast`` runs ``-m "unit and not slow"``). A test outside both is an error,
    so none escapes the marks."""
    for item in items:
        kinds = [kind for kind in _KINDS if kind in Path(str(item.path)).parts]
        if not kinds:
            raise pytest.UsageError(f"{item.nodeid}: tests live under tests/unit or tests/integration")
        item.add_marker(_KINDS[kinds[0]])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a whole module (explanations are then deterministic, and parallel test
    workers do not oversubscribe the cores); the previous setting is restored after it. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
