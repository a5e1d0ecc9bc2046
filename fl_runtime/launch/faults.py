"""Deterministic fault points for the drop-out tests: a test hook, not a timer.

``FL_TEST_FAULTS`` (the environment of ``local`` and of the processes it starts) lists faults as
``<member>:<point>`` separated by commas:

- ``<member>:never-joins``: ``local`` registers the member's key and names its node, but never starts it;
- ``<member>:killed-after-reply:<kind>/<round>``: the member's runner pushes its reply to that step to its
  SuperNode, then kills the SuperNode (SIGKILL) and itself: the reply is in flight, its sender gone.

Nothing sets it but a test: a member's launcher never passes it on (a client's job starts from its own settings).
"""

from __future__ import annotations

import os

FAULTS_ENV = "FL_TEST_FAULTS"


def _faults(member: str) -> set[str]:
    entries = (entry.strip() for entry in os.environ.get(FAULTS_ENV, "").split(",") if entry.strip())
    return {point for name, _, point in (entry.partition(":") for entry in entries) if name == member}


def never_joins(member: str) -> bool:
    return "never-joins" in _faults(member)


def killed_after_reply(member: str, kind: str, server_round: int) -> bool:
    return f"killed-after-reply:{kind}/{server_round}" in _faults(member)
