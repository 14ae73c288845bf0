"""Run a module under cProfile and write its profile when it stops: ``python -m bench.profiled OUT MODULE ARGS``.

`python -m cProfile -o` loses the profile of a uvicorn server: uvicorn re-raises the SIGTERM it handled
once it has shut down, so the process dies by the signal before cProfile writes. Here that re-raise is
dropped: the server shuts down as usual, the module returns, and the profile (of CPU time) is written.
"""

from __future__ import annotations

import cProfile
import runpy
import signal
import sys
import time


def main() -> None:
    out, module, *args = sys.argv[1:]
    signal.raise_signal = lambda _signal: None  # only in this profiled process
    sys.argv = [module, *args]
    # CPU time, not wall time: on a loaded machine wall time mostly measures waiting for a core.
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        profile.disable()
        profile.dump_stats(out)


if __name__ == "__main__":
    main()
