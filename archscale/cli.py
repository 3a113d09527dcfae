"""`archscale <command>`: the project's command line.

    archscale analyze curves.csv --out DIR [...]   the analysis of a learning-curve table (python -m analysis)
    archscale sizes [--time]                       the size ladder of every variant (python -m models.sizes)
    archscale plan --minutes 20 [...]              a study config that fits a time budget (study.plan)
    archscale version

Each command imports only what it needs: `archscale analyze` never imports torch.
"""
from __future__ import annotations

import sys

COMMANDS = {
    "analyze": ("analysis.__main__", "analyse a learning-curve table (python -m analysis)"),
    "sizes": ("models.sizes", "print the size ladder of every variant"),
    "plan": ("study.plan_cli", "write a study config that fits a wall-time budget on this machine"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if argv[0] in ("version", "--version"):
        from archscale import __version__

        print(f"archscale {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"archscale: unknown command {argv[0]!r}; allowed: {', '.join(COMMANDS)}, version", file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
