"""Run a benchmark case in a fresh Python process and report its time and peak memory.

Each case runs in its own process so that its peak resident memory (``ru_maxrss``) is its own:
the figure reported is the peak during the calls minus the resident memory just before the
first call (model and inputs already built), i.e. the extra memory a call needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

_TEMPLATE = """
import json, resource, time, torch
torch.set_num_threads({threads})
{setup}
def _call():
{call}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
_call()  # warm-up (allocator, one-time caches); its memory peak counts, its time does not
times = []
for _ in range({repeats}):
    start = time.perf_counter()
    _call()
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": min(times), "resident_mib": before / 1024,
                  "extra_peak_mib": max(peak - before, 0) / 1024}}))
"""


def run_case(
    setup: str, call: str, repeats: int = 3, threads: int = 2, warmup: bool = True
) -> dict:
    """Time ``call`` (a statement using names made by ``setup``); fastest of the repeats (least disturbed by other load) and peak MiB.

    With ``warmup=False`` the call runs once, measured (for calls too slow to repeat); the memory
    figure then includes one-time allocations.
    """
    body = _TEMPLATE.format(
        threads=threads,
        setup=textwrap.dedent(setup),
        call=textwrap.indent(textwrap.dedent(call), "    "),
        repeats=repeats,
    )
    if not warmup:
        body = body.replace("_call()  # warm-up", "pass  # no warm-up")
    proc = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_line() -> str:
    import os
    import platform

    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"threads=2, python {platform.python_version()}, load average {load}"
    )
