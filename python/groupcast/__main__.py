"""``python -m groupcast serve|channel ...``: the groupcast command line,
the same code as the ``groupcast`` binary (it runs until SIGINT/SIGTERM)."""

import sys

from ._groupcast import _cli


def main() -> int:
    try:
        return _cli(["groupcast", *sys.argv[1:]])
    except KeyboardInterrupt:
        # The CLI handles SIGINT itself (it stops cleanly and returns);
        # Python's own handler saw the same signal: nothing more to do.
        return 0


if __name__ == "__main__":
    sys.exit(main())
