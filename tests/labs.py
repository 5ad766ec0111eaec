"""A lab holding one small compare, designed once against a simulator for a module's tests."""

import pytest

from cosyvoice_lab import Lab, catalog
from cosyvoice_lab.lab.stage import MeasuringOptions
from cosyvoice_lab.offline import serve


def compared_lab(folder, prompts, *, preview_text, experiment, profiles=None, seed=None, concurrency=None) -> Lab:
    """A lab in ``folder`` whose log holds one compare of ``prompts`` on both models, two repeats
    each, designed without a key against a simulator that answers at once (gone afterwards: the
    takes and their previews stay). ``profiles``: per-model simulator profiles on top of that;
    ``seed``: the simulator's; ``concurrency``: 1 gives a seeded simulator the same voices on every run.

    Without the quality model (0.2 s of CPU a preview): the tests using this read ratings, pitch
    and the previews, never it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DASHSCOPE_API_KEY", raising=False)
        model_profiles = {"*": {"design_latency": 0}, **(profiles or {})}
        with serve(model_profiles=model_profiles, enrollment_rps=None, seed=seed) as sim:
            lab = Lab(
                folder,
                backend="offline",
                base_url=sim.base_url,
                progress=False,
                concurrency=concurrency,
                measuring=MeasuringOptions(predicted_quality=False),
            )
            lab.compare(
                prompts,
                target_models=catalog.COMPARE_MODELS,
                repeats=2,
                preview_text=preview_text,
                experiment=experiment,
            )
    return lab
