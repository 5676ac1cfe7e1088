"""The process tree, read from /proc: the one walk behind CPU, memory and connection accounting."""

from __future__ import annotations

from pathlib import Path


def stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, ...); None once gone.

    The command name may hold spaces or ')': the fields start after the last ')'.
    """
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        fields = stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def tree(*roots: int) -> list[int]:
    """``roots`` and every live descendant of them."""
    by_parent = children()
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(by_parent.get(pid, ()))
    return found
