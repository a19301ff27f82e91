"""``python -m rarl``: the ``rarl`` command line, also under ``accelerate launch -m rarl train …``.

Why: ``accelerate launch`` starts one process per device from a module or a script path; a ``__main__``
module lets every process run exactly the installed CLI instead of a copy of it.
"""

from __future__ import annotations

import sys

from rarl.cli import main

if __name__ == "__main__":
    sys.exit(main())
