"""Run every benchmark with its default sizes and print all their figures (``make bench``).

Each benchmark runs in its own process, one after the other, so neither warms or loads the other.
Nothing here passes or fails on timing; the exit status is non-zero only if a benchmark crashed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "turn_overhead.py",
    "offline_turn.py",
    "turn_taking.py",
    "denoise.py",
    "tool_calls.py",
    "mcp_call.py",
    "load.py",
    "webrtc.py",
    "telephony.py",
    "engines.py",
)


def main() -> int:
    failed: list[str] = []
    for script in BENCHMARKS:
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(HERE / script)], cwd=HERE.parent, check=False)
        elapsed = time.monotonic() - started
        if result.returncode != 0:
            failed.append(script)
            print(f"!! {script} exited with status {result.returncode} after {elapsed:.0f} s", flush=True)
        else:
            print(f"({script} took {elapsed:.0f} s)", flush=True)
        print(flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
