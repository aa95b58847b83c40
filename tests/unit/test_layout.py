"""The client side must never pull in the server side: a producer install carries nothing
that can touch private keys."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PRODUCER = Path(__file__).resolve().parents[2] / "producer"


def test_no_producer_module_imports_worker() -> None:
    offenders = []
    for path in PRODUCER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "worker"]
    assert offenders == []


def test_importing_producer_loads_no_worker_module() -> None:
    code = "import sys, producer; print(sorted(m for m in sys.modules if m.split('.')[0] == 'worker'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
