import beartype  # noqa: F401  (import before nnsight, which patches object in a way beartype cannot import after)
import pytest

from tests.tiny import save_tiny_model

FAMILIES = ["llama", "gemma3"]


@pytest.fixture(scope="session", params=FAMILIES)
def tiny_dir(request, tmp_path_factory):
    """Directory of a tiny random model, once per family per session."""
    return save_tiny_model(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    """The tiny model loaded through lib.models, wrapped in nnsight."""
    from lib.models import load_model

    return load_model(str(tiny_dir))
