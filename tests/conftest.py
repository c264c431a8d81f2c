"""Shared pytest setup: the helpers in tests/lib are importable from every suite."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
