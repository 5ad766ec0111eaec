"""The set-up files agree with each other: environment.yml, pyproject.toml, README, Makefile, CI."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
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
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cosyvoice_lab.version.__version__"}
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


def test_public_classes_report_the_front_door_and_only_it_sets_that():
    """``__module__`` is set once, in the front door, from ``__all__`` (as httpx does); no module
    hand-sets its own (ten did, and drifted: TransportError reported a module that lacked it).
    cosyvoice_lab/log/ is left to the log's rebuild (issue 25), which removes its line."""
    for name in cosyvoice_lab.__all__:
        value = getattr(cosyvoice_lab, name)
        if isinstance(value, type):
            assert value.__module__ == "cosyvoice_lab", name
    setters = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "cosyvoice_lab").rglob("*.py")
        if "log" not in p.relative_to(ROOT).parts[1:2] and p.name != "__init__.py"
        if re.search(r"^\w+\.__module__ = ", p.read_text(), re.M)
    ]
    assert not setters


def _sample_error(cls):
    """An instance of ``cls`` with every attribute its constructor takes set to something."""
    import inspect

    from cosyvoice_lab.design import VoiceDesign
    from cosyvoice_lab.errors import Problem

    values = {
        "message": "it went wrong",
        "status": 429,
        "code": "Throttling",
        "request_id": "req-1",
        "retry_after": 2.5,
        "never_sent": True,
        "design": VoiceDesign(voice_prompt="a calm voice", preview_text="Hello."),
        "sent_at": "2026-01-01T00:00:00+00:00",
        "cause": ValueError("the cause"),
        "problems": [Problem("prefix", "pattern", "must be letters")],
        "context": "invalid design",
        "task_id": "task-1",
        "voice_id": "cosyvoice-v3.5-plus-vd-lab-" + "0" * 32,
        "path": "/tmp/lab",
    }
    if "__init__" not in {k for c in cls.__mro__ if c.__module__.startswith("cosyvoice_lab") for k in vars(c)}:
        return cls("it went wrong")  # Exception's own constructor
    return cls(**{name: values[name] for name in inspect.signature(cls).parameters})


def _every_error_class():
    from cosyvoice_lab import errors

    found = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, errors.CosyVoiceLabError)}
    exported = {getattr(cosyvoice_lab, n) for n in cosyvoice_lab.__all__}
    exported = {v for v in exported if isinstance(v, type) and issubclass(v, BaseException)}
    assert exported <= found
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _every_error_class(), ids=lambda c: c.__name__)
def test_every_public_error_pickles_with_its_message_and_attributes(cls):
    import pickle

    error = _sample_error(cls)
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error) and back.args == error.args
    assert set(vars(back)) == set(vars(error))
    for name, value in vars(error).items():
        assert repr(getattr(back, name)) == repr(value), name
