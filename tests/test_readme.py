"""The README's Python examples run as written, each alone in a fresh interpreter
(so one that leans on a name defined in another fails here, as it would for a reader)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_example_runs_alone(i, tmp_path):
    code = BLOCKS[i]
    # The hybrid-recipe example trains the `cpu` preset for minutes; the same code on
    # the `smoke` preset cut to two steps on 32 examples checks that it runs (the
    # whole smoke preset took 198 s here, this 130 s, most of it compiling).
    cpu = 'seqkit.recipes.get("s4-pathfinder", "cpu")'
    if cpu in code:
        assert "import seqkit.train as st" in code
        small = ["data.train_size=32", "data.val_size=16", "data.test_size=16", "schedule.total_steps=2"]
        code = code.replace(cpu, f'st.override(seqkit.recipes.get("s4-pathfinder", "smoke"), {small!r})')
    assert '"cpu")' not in code, code
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"README example {i} failed:\n{code}\n{proc.stderr[-3000:]}"
