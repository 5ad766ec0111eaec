"""How far predicted quality on a clip's own length (``quality.dnsmos``) is from the looped
reference (``quality.dnsmos_reference``) over simulator previews: the figures behind
``quality.TOLERANCE`` and ``quality.MEAN_TOLERANCE``.

    PYTHONPATH=. .venv/bin/python benchmarks/dnsmos_agreement.py

Renders every prompt x text pair below (English and Chinese, three ages, both sexes; 2-9 s of
speech), scores each both ways and prints the largest and the mean difference per column, and
whether they sit inside the documented tolerances. The simulator renders deterministically, so
the figures are the same on every run.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np

from cosyvoice_lab.analysis import quality, voice
from cosyvoice_lab.offline import engine

PROMPTS = {
    "en": [
        "A calm middle-aged man with a deep voice.",
        "A young woman with a bright, cheerful voice.",
        "An elderly man, slow and hoarse, breathy",
        "A teenage boy, fast and energetic",
        "A soft-spoken older woman, warm and slow",
        "A gravelly narrator, low and rough",
    ],
    "zh": ["沉稳的中年男声", "年轻女声，明亮欢快", "温柔的老年女声，语速缓慢", "活泼的少年男声"],
}
TEXTS = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "Please bring an umbrella tomorrow afternoon.",
        "Good evening, and welcome to the program. Tonight we look at the history of the river and the "
        "town that grew around it.",
    ],
    "zh": ["这本书讲述了一个小村庄里发生的故事。", "今天天气很好，我们一起去公园散步吧。"],
}


def main() -> int:
    diffs = []
    for language, prompts in PROMPTS.items():
        for prompt, text in itertools.product(prompts, TEXTS[language]):
            x = engine.render(text, engine.settings_for(prompt, language, "v1"), 24000).astype(np.float64)
            y = voice.resampled(x, 24000)
            if len(y) >= quality.INPUT_S * quality.RATE:
                continue  # scored exactly as the reference
            new, old = quality.dnsmos(y), quality.dnsmos_reference(y)
            diffs.append([new[c] - old[c] for c in quality.COLUMNS])
    d = np.array(diffs)
    worst, mean = np.abs(d).max(axis=0), d.mean(axis=0)
    print(f"{len(d)} simulator previews under {quality.INPUT_S} s, own length minus looped reference")
    print(f"{'column':<12} {'max |diff|':>10} {'tolerance':>10} {'mean diff':>10} {'tolerance':>10}")
    inside = True
    for i, c in enumerate(quality.COLUMNS):
        ok = worst[i] <= quality.TOLERANCE[c] and abs(mean[i]) <= quality.MEAN_TOLERANCE[c]
        inside &= bool(ok)
        print(
            f"{c:<12} {worst[i]:>10.3f} {quality.TOLERANCE[c]:>10.2f} {mean[i]:>+10.3f} "
            f"{quality.MEAN_TOLERANCE[c]:>10.2f}{'' if ok else '  OUTSIDE'}"
        )
    print("every difference inside the documented tolerances" if inside else "OUTSIDE the documented tolerances")
    return 0 if inside else 1


if __name__ == "__main__":
    sys.exit(main())
