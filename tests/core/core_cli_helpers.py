"""Running the colearn CLI in a fresh process for the plugin-system tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_colearn(*args: str, extra_path: Path | None = None, **env: str):
    """Run the installed ``colearn`` CLI in a fresh process with the given environment."""
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith("COLEARN_") and k != "PYTHONPATH"
    }
    if extra_path is not None:
        full_env["PYTHONPATH"] = str(extra_path)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "colearn", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
