"""The set-up files agree with each other: environment.yml, pyproject.toml, README, Makefile, CI."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import cosyvoice_lab

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_is_python_311_plus_this_package_with_real_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    [pip] = [d["pip"] for d in deps if isinstance(d, dict)]
    [line] = pip
    m = re.fullmatch(r"-e \.\[([a-z,]+)\]", line)
    assert m, f"environment.yml should pip-install this package, got {line!r}"
    extras = set(m.group(1).split(","))
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])


def test_version_is_single_sourced():
    from importlib.metadata import version

    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cosyvoice_lab.__version__"}
    assert version("cosyvoice-lab") == cosyvoice_lab.__version__


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:8]
    assert any("make lab" in line for line in head) and any("make test" in line for line in head)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_front_door_is_small_sorted_and_lazy():
    assert cosyvoice_lab.__all__ == sorted(cosyvoice_lab.__all__)
    for name in cosyvoice_lab.__all__:
        assert getattr(cosyvoice_lab, name) is not None
    heavy = "('pandas', 'numpy', 'ipywidgets', 'requests')"
    code = f"import sys, cosyvoice_lab; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", "import cosyvoice_lab must not load heavy modules"


def test_nothing_below_lab_imports_ipywidgets():
    core = [p for p in (ROOT / "cosyvoice_lab").rglob("*.py") if "widgets" not in p.parts]
    offenders = [p.name for p in core if re.search(r"^\s*(import|from) ipywidgets", p.read_text(), re.M)]
    assert not offenders
