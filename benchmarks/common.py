"""Timing and README-table helpers shared by the benchmark scripts.

Every benchmark measures our kernel and its baseline in the same process run, prints a
markdown table, and with ``--write-readme`` replaces the table between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in README.md.
"""

import argparse
import os
import platform
import re
import statistics
import time
from typing import Callable, List, Sequence

import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn: Callable[[], object], device: str = "cpu", repeats: int = 5, warmup: int = 1,
              min_time: float = 0.2) -> float:
    """Median seconds per call of ``fn`` (inner loop grows until a batch takes >= min_time)."""
    for _ in range(warmup):
        fn()
    sync(device)
    inner = 1
    while True:
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        if time.perf_counter() - start >= min_time or inner >= 1024:
            break
        inner *= 2
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def fmt_rate(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.1f}"


def markdown_table(header: Sequence[str], rows: List[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(device: str) -> str:
    if str(device).startswith("cuda"):
        what = torch.cuda.get_device_name()
    else:
        what = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return f"_{device} ({what}), torch {torch.__version__}, {time.strftime('%Y-%m-%d')}_"


def write_readme_section(name: str, text: str, readme: str = README) -> None:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    with open(readme) as f:
        content = f.read()
    block = f"{begin}\n{text}\n{end}"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        raise SystemExit(f"README.md has no {begin} ... {end} markers")
    with open(readme, "w") as f:
        f.write(pattern.sub(lambda _: block, content))
    print(f"wrote table '{name}' into {readme}")


def publish(name: str, device: str, body: str, write_readme: bool) -> str:
    """Prints ``body`` under the machine line and, if asked, writes it as README table
    ``NAME-DEVICE``; returns the printed text."""
    table = machine_line(device) + "\n\n" + body
    print(table)
    if write_readme:
        write_readme_section(f"{name}-{device}", table)
    return table


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--write-readme", action="store_true", help="update the README table")
    return p
