import os
import sys

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
