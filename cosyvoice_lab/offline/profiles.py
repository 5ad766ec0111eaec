"""Model profiles: how the simulator's target models differ.

The docs say little about how cosyvoice-v3.5-plus and -flash differ: flash is cheaper and
"responds faster" ("比plus模型成本低…响应快", contract §11); nothing about quality. So by
default the simulator's models differ only in design latency: the same prompt and the same
per-voice draw give the same voice on every model. Offline, a comparison of models therefore
finds nothing unless a difference is planted, which is what profiles are for: plant one
(``pitch_shift=3`` on flash) and see whether the evidence tools find it.

From Python::

    serve(model_profiles={"cosyvoice-v3.5-flash": {"pitch_shift": 3}})
    serve(model_profiles={"*": {"design_latency": 0}})          # every model; tests use this

From the command line: ``cosyvoice-lab offline --profile cosyvoice-v3.5-flash:pitch_shift=3``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from cosyvoice_lab import catalog

# ASSUMPTION (the simulator's, not the service's): design latency is not published (the
# official sample waits up to 60 s). The simulator designs a plus voice in about 0.45 s and a
# flash voice in two thirds of that, each jittered by +-30 %: ordered as the docs say ("flash
# responds faster") and quick enough that a notebook's designs take well under a minute.
PLUS_DESIGN_LATENCY_S = 0.45
FLASH_LATENCY_RATIO = 2 / 3
LATENCY_JITTER = 0.3
ALL_MODELS = "*"  # the key of a profile change that applies to every model


@dataclass(frozen=True)
class ModelProfile:
    """How one target model's voices come out of the simulator.

    Attributes:
        design_latency: seconds a design takes (the mean; each design is jittered by
            +-:data:`LATENCY_JITTER` of it). Includes the engine's own time.
        pitch_shift: semitones added to every voice of the model (formants kept).
        pace: factor on the speaking rate (1.2 = 20 % faster).
        adherence: 0-1, how strongly the prompt's words move the voice: 1 fully, 0 not at all
            (settings stay neutral and gender is drawn at random).
        variation: factor on the per-voice random spread (0 = identical prompts give
            identical voices).
        noise: 0-1, a quality loss: steady noise from 40 dB SNR (0 adds none) to 10 dB (1).
    """

    design_latency: float = 0.0
    pitch_shift: float = 0.0
    pace: float = 1.0
    adherence: float = 1.0
    variation: float = 1.0
    noise: float = 0.0

    def __post_init__(self):
        checks = {
            "design_latency": 0 <= self.design_latency <= 120,
            "pitch_shift": -12 <= self.pitch_shift <= 12,
            "pace": 0.25 <= self.pace <= 4,
            "adherence": 0 <= self.adherence <= 1,
            "variation": 0 <= self.variation <= 5,
            "noise": 0 <= self.noise <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"model profile out of range: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)} "
                "(design_latency 0-120 s, pitch_shift -12..12 semitones, pace 0.25-4, "
                "adherence 0-1, variation 0-5, noise 0-1)"
            )

    def changed(self, changes: Mapping[str, object]) -> ModelProfile:
        """A copy with ``changes`` (field -> number); raises ValueError naming an unknown field."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown model profile field(s) {unknown}; known: {sorted(known)}")
        return replace(self, **{k: float(v) for k, v in changes.items()})  # type: ignore[arg-type]

    def design_seconds(self, rng: random.Random) -> float:
        """How long one design takes: the mean, jittered."""
        return self.design_latency * rng.uniform(1 - LATENCY_JITTER, 1 + LATENCY_JITTER)

    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return asdict(self)


NEUTRAL = ModelProfile()  # words fully heard, no planted difference, no latency


def _default(model: str) -> ModelProfile:
    flash = model.endswith("-flash")
    return ModelProfile(design_latency=PLUS_DESIGN_LATENCY_S * (FLASH_LATENCY_RATIO if flash else 1.0))


# ASSUMPTION: the Qwen design family publishes no design latency and nothing on how its voices
# differ from CosyVoice's (contract §12). Its models get plus's latency and the same neutral
# voice: the same words and per-voice draw sound the same on every family unless a user plants
# a difference (``--profile qwen3-tts-vd-2026-01-26:pitch_shift=2``).
DEFAULTS: dict[str, ModelProfile] = {
    **{m: _default(m) for m in catalog.MODELS},
    **{m: _default(m) for m in catalog.FAMILIES[catalog.QWEN_FAMILY].target_models},
}


def resolve(model_profiles: Mapping[str, ModelProfile | Mapping[str, object]] | None) -> dict[str, ModelProfile]:
    """Every model's profile: :data:`DEFAULTS`, changed by ``model_profiles``.

    ``model_profiles`` maps a model name (or ``"*"`` for every model) to a
    :class:`ModelProfile` (used as it is) or a dict of changes to the default. ``"*"`` applies
    first, a model's own entry after it.

    Raises:
        ValueError: an unknown model or field, or a value out of range.
    """
    out = dict(DEFAULTS)
    given = dict(model_profiles or {})
    unknown = sorted(set(given) - set(out) - {ALL_MODELS})
    if unknown:
        raise ValueError(f"no such model {unknown}; profiles exist for {sorted(out)} and {ALL_MODELS!r}")
    order = ([ALL_MODELS] if ALL_MODELS in given else []) + [m for m in given if m != ALL_MODELS]
    for key in order:
        for model in out if key == ALL_MODELS else [key]:
            change = given[key]
            out[model] = change if isinstance(change, ModelProfile) else out[model].changed(change)
    return out


def parse_option(text: str) -> tuple[str, dict[str, float]]:
    """``"cosyvoice-v3.5-flash:pitch_shift=3,pace=1.1"`` -> ``("cosyvoice-v3.5-flash",
    {"pitch_shift": 3.0, "pace": 1.1})`` (the CLI's ``--profile``).

    Raises:
        ValueError: not ``MODEL:FIELD=NUMBER[,FIELD=NUMBER...]``, or an unknown field.
    """
    model, sep, rest = text.partition(":")
    pairs = [p.strip() for p in rest.split(",") if p.strip()]
    if not sep or not model.strip() or not pairs or any("=" not in p for p in pairs):
        raise ValueError(
            f"profile {text!r} is not MODEL:FIELD=NUMBER[,FIELD=NUMBER...], e.g. cosyvoice-v3.5-flash:pitch_shift=3"
        )
    changes: dict[str, float] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            changes[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"profile {text!r}: {name.strip()} must be a number, got {value!r}") from None
    NEUTRAL.changed(changes)  # names the unknown field now, not at serve time
    return model.strip(), changes


def merge_options(options: list[str]) -> dict[str, dict[str, float]]:
    """Several ``--profile`` options as one ``model_profiles`` dict (later ones win)."""
    merged: dict[str, dict[str, float]] = {}
    for text in options:
        model, changes = parse_option(text)
        merged.setdefault(model, {}).update(changes)
    resolve(merged)  # names an unknown model or a value out of range now, not at serve time
    return merged
