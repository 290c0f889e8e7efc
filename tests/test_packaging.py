"""seqkit installs one import name only; kernels/ and recipes/ live inside it."""

import os
import pathlib
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest

import seqkit
import seqkit.kernels
import seqkit.recipes

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_namespaces_map_into_seqkit(tmp_path):
    assert pathlib.Path(seqkit.kernels.__file__).parent.name == "kernels"
    assert pathlib.Path(seqkit.recipes.__file__).parent.name == "recipes"
    # In a clean interpreter (outside the repository and tests/), only seqkit exists.
    code = (
        "import importlib.util as u, seqkit.kernels, seqkit.recipes; "
        "print(u.find_spec('kernels'), u.find_spec('recipes'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["None", "None"], out.stdout


def test_python_started_in_the_checkout_imports_it_whole():
    """Python started in the repository root imports `seqkit` from the checkout's
    `seqkit/`, shadowing the install; `seqkit.kernels` and `seqkit.recipes` come from
    the checkout's `kernels/` and `recipes/` then, as an install maps them (without
    site-packages, so no install can supply them), and the README's snippets run."""
    code = (
        "import importlib.util as u; "
        "print(u.find_spec('seqkit').origin, u.find_spec('seqkit.kernels').origin, "
        "u.find_spec('seqkit.recipes').origin)"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        str(ROOT / "seqkit" / "__init__.py"),
        str(ROOT / "kernels" / "__init__.py"),
        str(ROOT / "recipes" / "__init__.py"),
    ]
    code = "from seqkit.ssm import S4D; import seqkit.recipes as r; print(r.get('s4-listops').name)"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "s4-listops", out.stderr


@pytest.mark.slow
def test_wheel_holds_only_the_seqkit_namespace(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
    )
    (wheel,) = tmp_path.glob("seqkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"seqkit"}, tops
    assert "seqkit/kernels/_cauchy.py" in names
    assert "seqkit/recipes/__init__.py" in names


@pytest.mark.slow
@pytest.mark.parametrize("editable", [True, False])
def test_fresh_install_maps_kernels_and_recipes(tmp_path, editable):
    """An editable and a regular install, each in a fresh venv (no dependencies
    needed to locate the modules), find seqkit.kernels in kernels/ and nothing
    under generic top-level names."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    target = ["-e", str(ROOT)] if editable else [str(ROOT)]
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", *target], check=True)
    code = (
        "import importlib.util as u; "
        "print(u.find_spec('seqkit.kernels').origin, u.find_spec('seqkit.recipes').origin, "
        "u.find_spec('kernels'), u.find_spec('recipes'))"
    )
    out = subprocess.run([py, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    kernels, recipes, top_k, top_r = out.stdout.split()
    assert kernels.endswith("kernels/__init__.py") and recipes.endswith("recipes/__init__.py")
    assert (top_k, top_r) == ("None", "None")
    inside_repo = kernels.startswith(str(ROOT))
    assert inside_repo == editable, kernels


def _version(text):
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (3 - len(parts))


def test_floors_file_pins_pyproject_floors():
    """`.ci/floors` tests the oldest supported dependencies: its pins must be
    pyproject.toml's floors, so that raising one without the other fails here."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", dep.split(";")[0].strip())
        assert m, f"expected every runtime dependency as NAME>=VERSION, got {dep!r}"
        floors[m[1].lower()] = _version(m[2])
    pins = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = _version(version.strip())
    assert pins.pop("jaxlib") == pins["jax"], "jaxlib is pinned at jax's version"
    assert pins == floors
