"""Peak memory of a piece of code in a fresh interpreter (ru_maxrss, Linux), for tests and benchmarks alike."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def peak_of(code: str, timeout: float = 3600) -> dict:
    """Run ``code`` in a new interpreter with torch (one thread) and hiddenwidgets imported; it fills the dict
    ``out``, may call ``peak()`` (bytes so far); ``out['peak']`` and ``out['base']`` (bytes, after the imports)
    are added. Returns ``out``."""
    script = textwrap.dedent("""
        import json, resource
        import numpy as np
        import torch
        import hiddenwidgets as hw
        torch.set_num_threads(1)
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        base = peak()
        out = {}
    """) + textwrap.dedent(code) + "\nout['peak'] = peak(); out['base'] = base\nprint(json.dumps(out))\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
