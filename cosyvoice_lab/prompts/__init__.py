"""Voice prompts: :class:`PromptSpec` (a structured description that renders to a concrete
Chinese or English prompt, with presets and variants) and the lexicon of words the simulator,
the adherence checks and the builder all read.
"""

from __future__ import annotations

from cosyvoice_lab.prompts.lexicon import LEXICON, Claim, read_claims
from cosyvoice_lab.prompts.spec import DIMENSIONS, FIELDS, IMPLIED, PRESETS, PromptSpec, options

__all__ = ["DIMENSIONS", "FIELDS", "IMPLIED", "LEXICON", "PRESETS", "Claim", "PromptSpec", "options", "read_claims"]
