"""``python -m dataferry``: the same as the ``dataferry`` command."""

from dataferry._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
