"""The browser tests run against the local stack (one per test module)."""

from ..stack_helpers import running_stack  # noqa: F401 (a fixture, used by name)
