"""``python -m groupcast serve|channel ...``: the groupcast command line,
the same code as the ``groupcast`` binary (it runs until SIGINT/SIGTERM)."""

import sys

from ._groupcast import _cli


def main() -> int:
    return _cli(["groupcast", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
