import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
# The suite runs the eager path unless a test asks for backend="compiled" (tests/test_compiled.py
# compares the two); compiled chunks are small in tests to keep compile times short.
os.environ.setdefault("ADAMKIT_BACKEND", "eager")
os.environ.setdefault("ADAMKIT_COMPILE_CHUNK", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several pytest-xdist workers share the cores, each with torch's usual thread count:
    # OpenMP threads that spin while they wait took the cores from the other worker (the
    # char-lm tests took twice as long). Set before torch is imported, which reads it once.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(autouse=True)
def torch_threads_restored():  # type: ignore[no-untyped-def]
    """Each test starts with the worker's thread count. A test that changes it (the bench run
    in-process sets one thread) would otherwise leave it changed for the tests after it, and
    Dynamo guards the thread count: every configuration compiled before would compile again."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def fresh_configurations(monkeypatch: pytest.MonkeyPatch, tmp_path):  # type: ignore[no-untyped-def]
    """An empty process-wide cache of compiled configurations and an empty store of traces,
    for tests that count compiles or look at code generation (a configuration another test
    compiled may have served other tensors since; a stored one is not generated again)."""
    from adamkit.core import compiled, graphs, stored_traces

    fresh = graphs.Configurations()
    monkeypatch.setattr(compiled, "CONFIGURATIONS", fresh)
    monkeypatch.setattr(stored_traces, "directory", lambda: tmp_path / "traces")
    return fresh
