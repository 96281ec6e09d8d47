"""Where each service's CPU goes under load: py-spy sampling every process of the stack during
the measured window (``make bench PROFILE=1``), summed up by package and by function.

py-spy (on PyPI, a dev dependency) reads the stacks of a running interpreter from outside,
so the services run unchanged; it samples 50 times a second per process, which costs about
a tenth of a core on the bench's side. Only busy samples count (py-spy leaves out threads
waiting in the event loop's poll).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RATE = 50
"""Samples per second per process."""
TOP = 15
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(:\d+)?\)$")
PROJECT = ("orchestrator", "order_svc", "inventory_svc", "payment_svc", "fulfillment_svc", "notification_svc", "contracts")


def executable() -> str | None:
    """py-spy beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def available() -> bool:
    return executable() is not None


async def record(pids: dict[str, int], seconds: float, directory: Path) -> dict[str, Path]:
    """Sample every process of ``pids`` for ``seconds``; the collapsed stacks, by instance."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name.replace('#', '-')}.txt" for name in pids}
    runs = [
        await asyncio.create_subprocess_exec(
            executable() or "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "--nonblocking",
            "--full-filenames",
            "--output",
            str(paths[name]),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    await asyncio.gather(*(run.wait() for run in runs))
    return {name: path for name, path in paths.items() if path.exists()}


def package(file: str) -> str:
    """The library or part of this project a frame's file belongs to."""
    parts = Path(file).parts
    if "site-packages" in parts:
        name = parts[parts.index("site-packages") + 1]
        return name.removesuffix(".py").split(".")[0]
    for index, part in enumerate(parts):
        if part == "messaging" and index and parts[index - 1] == "libs":
            return "messaging"
        if part in PROJECT:
            return part
    return "python (stdlib)" if "python3" in file or file.startswith("<") else Path(file).stem


def summarise(collapsed: str) -> dict[str, Any]:
    """Shares of the busy samples: in which each package, and each function, is on the stack,
    and which package's code was running (the frame on top)."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        packages, functions, last = set(), set(), ""
        for frame in stack.split(";"):
            match = _FRAME.match(frame.strip())
            if not match:
                continue
            pkg = last = package(match["file"])
            packages.add(pkg)
            functions.add(f"{pkg}: {match['function']}")
        by_package.update(dict.fromkeys(packages, samples))
        by_function.update(dict.fromkeys(functions, samples))
        if functions:
            leaf[last] += samples

    def shares(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, count / total) for name, count in counter.most_common(TOP)] if total else []

    return {
        "busy_samples": total,
        "by_package": shares(by_package),
        "self_by_package": shares(leaf),
        "by_function": shares(by_function),
    }


def summaries(paths: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {name: summarise(path.read_text()) for name, path in sorted(paths.items())}


def text(profiles: dict[str, dict[str, Any]]) -> str:
    """The summaries as the lines ``profile.txt`` holds."""
    lines = []
    for name, summary in profiles.items():
        lines.append(f"{name}: {summary['busy_samples']} busy samples at {RATE}/s")
        lines.append("  running its own code (the frame on top), by package:")
        lines += [f"    {share:6.1%}  {pkg}" for pkg, share in summary.get("self_by_package", [])]
        lines.append("  on the stack, by package:")
        lines += [f"    {share:6.1%}  {pkg}" for pkg, share in summary["by_package"]]
        lines.append("  on the stack, by function:")
        lines += [f"    {share:6.1%}  {function}" for function, share in summary["by_function"]]
    return "\n".join(lines) + "\n"
