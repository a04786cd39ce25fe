import beartype  # noqa: F401  (import before nnsight, which patches object in a way beartype cannot import after)
import pytest

from tests.tiny import save_tiny_model

FAMILIES = ["llama", "gemma3"]


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu",
                     help="device for the models under test: cpu (default), cuda or cuda:N; "
                          "slow references always run on the CPU")


@pytest.fixture(scope="session")
def device(request) -> str:
    """Where the model under test lives (--device); lib must return CPU tensors whatever it is."""
    from lib.params import resolve_device

    return resolve_device(request.config.getoption("--device"))


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_dir(request, tmp_path_factory):
    """Directory of a tiny random model, once per family per session."""
    return save_tiny_model(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="session")
def tiny_model(tiny_dir, device):
    """The tiny model loaded through lib.models on --device, wrapped in nnsight."""
    from lib.models import load_model

    return load_model(str(tiny_dir), device)


@pytest.fixture(scope="session")
def reference_hf(tiny_dir):
    """The same tiny model as a plain transformers model on the CPU: the slow reference."""
    from lib.models import load_hf

    return load_hf(str(tiny_dir))[0]
