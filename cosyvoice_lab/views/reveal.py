"""What a blind listening round found, once revealed: every label uncovered, mean rating per
model and per prompt (``listening.BlindSession.reveal`` builds it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cosyvoice_lab import html


@dataclass(frozen=True)
class Mean:
    """A mean rating and how many ratings it averages (``mean`` is None when ``n`` is 0)."""

    mean: float | None
    n: int


def mean_of(values: Sequence[int]) -> Mean:
    """The Mean of ``values`` (None when there are none)."""
    return Mean(sum(values) / len(values) if values else None, len(values))


@dataclass(frozen=True)
class RevealRow:
    """One take as the reveal shows it."""

    label: str
    take_id: str
    model: str
    prompt_index: int
    prompt: str
    rating: int | None


@dataclass(frozen=True)
class RevealSummary:
    """What blind listening found: the labels uncovered and mean ratings.

    Attributes:
        rows: every take in presentation order, with its label, model, prompt and rating.
        per_model: model → Mean (in order of first appearance of the model).
        per_prompt: prompt index → Mean (prompts numbered in order of first appearance).
        prompts: prompt index → prompt text.
        seed, session_id: the session's identity.
    """

    rows: tuple[RevealRow, ...]
    per_model: dict[str, Mean]
    per_prompt: dict[int, Mean]
    prompts: dict[int, str]
    seed: int
    session_id: str

    @property
    def rated(self) -> int:
        return sum(r.rating is not None for r in self.rows)

    def best_model(self) -> str | None:
        """The model with the highest mean rating (None if nothing was rated). A mean of a
        few ratings is no evidence: ``Comparison.evidence(ratings=...)`` says whether it is."""
        rated = [(m.mean, name) for name, m in self.per_model.items() if m.n]
        return max(rated)[1] if rated else None

    def to_text(self) -> str:
        """A plain-text summary (what ``print`` shows)."""
        lines = [f"blind session {self.session_id} (seed {self.seed}): {self.rated}/{len(self.rows)} rated"]
        lines += [f"  {name}: {fmt(m)}" for name, m in self.per_model.items()]
        lines += [f"  prompt {i}: {fmt(m)} — {short(self.prompts[i])}" for i, m in self.per_prompt.items()]
        return "\n".join(lines)

    __str__ = to_text

    def html(self) -> str:
        """Mean rating per model and per prompt, then the uncovered labels, as HTML tables."""
        return html.render(
            "reveal.html.j2",
            session_id=self.session_id,
            seed=self.seed,
            rated=self.rated,
            rows=self.rows,
            models=[(name, fmt(m)) for name, m in self.per_model.items()],
            prompts=[(f"{i}. {short(self.prompts[i], 60)}", fmt(m)) for i, m in self.per_prompt.items()],
        )


def fmt(m: Mean) -> str:
    """``4.00 (n=3)``, or ``not rated``."""
    return f"{m.mean:.2f} (n={m.n})" if m.n else "not rated"


def short(text: str, n: int = 48) -> str:
    """``text`` cut to ``n`` characters with an ellipsis."""
    return text if len(text) <= n else text[: n - 1] + "…"


def summarise(
    rows: tuple[RevealRow, ...], models: Sequence[str], prompt_order: list[str], seed: int, session_id: str
) -> RevealSummary:
    """The RevealSummary of ``rows``: means per model (in the order of ``models``) and per prompt."""
    per_model = {m: mean_of([r.rating for r in rows if r.model == m and r.rating is not None]) for m in models}
    used = sorted({r.prompt_index for r in rows})
    per_prompt = {i: mean_of([r.rating for r in rows if r.prompt_index == i and r.rating is not None]) for i in used}
    return RevealSummary(rows, per_model, per_prompt, {i: prompt_order[i] for i in used}, seed, session_id)
