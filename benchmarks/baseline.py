"""Run another source tree's lisguard (the code before a change) with this virtualenv:

    python -m benchmarks.baseline TREE serve|check ...

TREE holds `lisguard/` and `config/` (e.g. `git archive <commit> lisguard config | tar -x -C
TREE`). The editable install of this checkout would win over PYTHONPATH, so its import hook is
taken out first.
"""

from __future__ import annotations

import sys


def main() -> None:
    tree, argv = sys.argv[1], sys.argv[2:]
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in str(h)]
    sys.path.insert(0, tree)
    for name in [m for m in sys.modules if m == "lisguard" or m.startswith("lisguard.")]:
        del sys.modules[name]
    from lisguard.cli import main as lisguard_main

    raise SystemExit(lisguard_main(argv))


if __name__ == "__main__":
    main()
