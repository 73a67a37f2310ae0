"""Fork safety: a guard used before `fork()` works in the child (gunicorn `--preload`)."""

from __future__ import annotations

import os
import time

import pytest

from py_rate_guard import RateGuard


def _run_in_child(guard: RateGuard, identity: str) -> int:
    """Forks; the child hits twice (the second denied) and exits 0 on success. Returns the
    child's exit code, or fails when it hangs."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            first = guard.hit(identity, "1/minute")
            second = guard.hit(identity, "1/minute")
            code = 0 if first.allowed and not second.allowed else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the child hung: the guard was not rebuilt after fork()")


def test_a_guard_used_before_fork_works_in_the_child(guard: RateGuard) -> None:
    assert guard.hit("parent", "5/minute").allowed
    assert _run_in_child(guard, "child") == 0
    # A second fork from the same parent works as well.
    assert _run_in_child(guard, "child-2") == 0
    # The parent goes on with its own runtime and connections.
    assert guard.hit("parent", "5/minute").remaining == 3


def test_the_child_of_a_child_works(guard: RateGuard) -> None:
    guard.hit("p", "5/minute")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            guard.hit("c", "5/minute")
            code = _run_in_child(guard, "grandchild")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
