import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
# The suite runs the eager path unless a test asks for backend="compiled" (tests/test_compiled.py
# compares the two); compiled chunks are small in tests to keep compile times short.
os.environ.setdefault("ADAMKIT_BACKEND", "eager")
os.environ.setdefault("ADAMKIT_COMPILE_CHUNK", "2")
