"""``python -m bench``: the comparison; ``python -m bench scaling``: the scaling series;
``python -m bench snapshot``: what persistence snapshots cost; ``python -m bench stalls``:
how long whole-store work holds the event loop at a million torrents; ``python -m bench
engines``: the in-memory store's compiled and Python engines, memory and announce cost;
``python -m bench tail``: what the tracker's CPU ran while its slowest replies waited."""

from __future__ import annotations

import sys


def main() -> int:
    if sys.argv[1:2] == ["scaling"]:
        from bench.scaling import main as scaling_main

        return scaling_main(sys.argv[2:])
    if sys.argv[1:2] == ["snapshot"]:
        from bench.snapshot import main as snapshot_main

        return snapshot_main(sys.argv[2:])
    if sys.argv[1:2] == ["engines"]:
        from bench.engines import main as engines_main

        return engines_main(sys.argv[2:])
    if sys.argv[1:2] == ["tail"]:
        from bench.tail import main as tail_main

        return tail_main(sys.argv[2:])
    if sys.argv[1:2] == ["stalls"]:
        from bench.stalls import main as stalls_main

        return stalls_main(sys.argv[2:])
    from bench.runner import main as runner_main

    return runner_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
