"""Sampling profiles of the tracker under load (``python -m bench --profile``).

py-spy samples the tracker process from outside while the measured load runs, and writes
collapsed stacks (``<out>/profile-<target>-<mode>.txt``, loadable in speedscope or any
flamegraph tool) plus a summary of the functions where the samples landed.

py-spy runs with ``--nonblocking``: its default mode stops the process for every sample,
and on this workload that piles the samples onto system-call boundaries (a UDP tracker
then seems to spend over half its time in ``sendto`` while /proc shows about a sixth of its
CPU time in the kernel). Profiled runs are not saved as results all the same.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

PY_SPY_HINT = "py-spy is not installed (.venv/bin/pip install py-spy)"


def py_spy() -> str | None:
    """The py-spy executable, next to this Python or on the PATH."""
    import sys

    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start_profile(pid: int, duration: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start sampling ``pid`` for ``duration`` seconds into ``out`` (raw collapsed stacks)."""
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(duration))),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)": drop the line number.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/shoal/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def summarize_profile(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from a py-spy raw file."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        total += count
        self_counts[frames[-1]] += count
        for name in set(frames):
            total_counts[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self %  function (where the samples landed)"]
    lines += [f"{100 * c / total:5.1f}  {name}" for name, c in self_counts.most_common(top)]
    lines += ["", "total %  function (including what it calls)"]
    lines += [f"{100 * c / total:5.1f}  {name}" for name, c in total_counts.most_common(top)]
    return "\n".join(lines)
