"""Peak resident memory of a process tree, by kind of process and by client (Linux /proc only).

A client's processes are the ones whose ``FLWR_HOME`` lies in its node workspace (``node-<name>``):
its SuperNode and its runner, which is what one client account's job holds in memory.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

KINDS = {
    "flower-superlink": "flower-superlink",
    "flower-supernode": "flower-supernode",
    "flower-superexec": "flower-superexec",
    "flwr-serverapp": "flwr-serverapp",
    "flwr-clientapp": "flwr-clientapp",
    "fl_runtime.launch.runner": "client runner",
}


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, pending, pids = _children(), [root], []
    while pending:
        pid = pending.pop()
        pids.append(pid)
        pending.extend(tree.get(pid, []))
    return pids


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def kind(pid: int) -> str:
    try:
        words = [Path(w.decode(errors="replace")).name for w in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except OSError:
        return "?"
    for word in words[:3]:
        if word in KINDS:
            return KINDS[word]
    if any(word.startswith("bench_") for word in words[:3]):
        return "launcher (benchmark process)"
    return "flwr CLI" if "flwr" in words[:3] else (words[0] if words and words[0] else "other")


def client_of(pid: int) -> str | None:
    """The client whose node workspace holds this process's FLWR_HOME, if any."""
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environment:
        if entry.startswith(b"FLWR_HOME="):
            workspace = Path(entry[len(b"FLWR_HOME=") :].decode(errors="replace")).parent.name
            return workspace.removeprefix("node-") if workspace.startswith("node-") else None
    return None


class MemorySampler(threading.Thread):
    """Every 0.2 s, the RSS of this process and all its descendants: peaks in total, by kind of
    process (all processes of a kind together) and by client (its SuperNode and runner together)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_total_kib = 0
        self.peak_by_kind: dict[str, int] = {}
        self.peak_by_client: dict[str, int] = {}
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.is_set():
            self.sample()
            self._finished.wait(0.2)

    def sample(self) -> None:
        by_kind: dict[str, int] = {}
        by_client: dict[str, int] = {}
        for pid in _descendants(os.getpid()):
            rss = _rss_kib(pid)
            by_kind[kind(pid)] = by_kind.get(kind(pid), 0) + rss
            client = client_of(pid)
            if client is not None:
                by_client[client] = by_client.get(client, 0) + rss
        self.peak_total_kib = max(self.peak_total_kib, sum(by_kind.values()))
        for peaks, current in ((self.peak_by_kind, by_kind), (self.peak_by_client, by_client)):
            for key, kib in current.items():
                peaks[key] = max(peaks.get(key, 0), kib)

    def stop(self) -> None:
        self._finished.set()
        self.join()

    def figures(self) -> dict:
        return {
            "peak-rss-mib-total": self.peak_total_kib / 1024,
            "peak-rss-mib-by-process-kind": {k: v / 1024 for k, v in sorted(self.peak_by_kind.items()) if v},
            "peak-rss-mib-by-client": {k: v / 1024 for k, v in sorted(self.peak_by_client.items())},
        }
