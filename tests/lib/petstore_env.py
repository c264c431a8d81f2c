"""The environment of the system under test, as `./petstore test` exports it."""
import os


def need(name):
    """The value of an environment variable the test runner sets; fails clearly without it."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the suites through ./petstore test "
                           "(or eval \"$(./petstore env)\" against a running system)")
    return value


def build_dir():
    return need("PETSTORE_BUILD_DIR")


def binary(relative):
    """Path of a built program, e.g. binary('outbox/outbox-relay')."""
    return os.path.join(build_dir(), relative)


def launcher():
    return os.path.join(os.path.dirname(__file__), "..", "..", "petstore")
