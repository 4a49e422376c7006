"""What a service costs the machine, read from /proc (Linux): resident memory and open file descriptors of a process
and every process under it (uvicorn workers, the llama.cpp engine child, MLflow's job consumers)."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible now."""
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone since the listing
        # The command name (field 2) may hold spaces and parentheses: fields start after its last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_pids(root: int, tree: dict[int, list[int]] | None = None) -> list[int]:
    """`root` and all its descendants (root first); empty when root is gone."""
    if not (PROC / str(root)).exists():
        return []
    tree = children_map() if tree is None else tree
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(tree.get(pid, []))
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 when it is gone)."""
    try:
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def rss_anon_bytes(pid: int) -> int:
    """Private anonymous resident memory (RssAnon): what a leak grows. Unlike RSS it holds no file-backed pages,
    which the kernel takes back under memory pressure from neighbours (RSS then falls with no change in the
    process, as the committed hour-long soak saw at its 51st minute)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def open_fds(pid: int) -> int:
    """Open file descriptors of one process (0 when it is gone or not ours to read)."""
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0


def tree_usage(root: int, tree: dict[int, list[int]] | None = None) -> dict[str, int]:
    """RSS (bytes), open fds and process count of a process tree."""
    pids = tree_pids(root, tree)
    return {
        "rss_bytes": sum(rss_bytes(p) for p in pids),
        "rss_anon_bytes": sum(rss_anon_bytes(p) for p in pids),
        "fds": sum(open_fds(p) for p in pids),
        "processes": len(pids),
    }
