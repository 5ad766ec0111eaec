"""Speaker embeddings (a pretrained network run with numpy), Lab.closest and Lab.remeasure, on
the real simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosyvoice_lab import Lab
from cosyvoice_lab.analysis import embedding, pairwise, speaker_embedding, variation, voice_embedding
from cosyvoice_lab.analysis.measures import VERSION
from cosyvoice_lab.offline import engine, serve

SR = 24000
SENTENCES = {
    "en": [
        "Good evening, and welcome to the late news. Here are tonight's headlines.",
        "The quick brown fox jumps over the lazy dog, and then it runs into the forest.",
    ],
    "zh": ["今天天气很好，我们一起去公园散步吧。", "这本书讲述了一个小村庄里发生的故事。"],
}
PROMPTS = {"en": "A calm middle-aged man with a deep voice.", "zh": "沉稳的中年男声"}


def speech(prompt, language, voice, sentence) -> np.ndarray:
    return engine.render(SENTENCES[language][sentence], engine.settings_for(prompt, language, voice), SR)


def test_the_mel_front_end_has_librosas_slaney_filters():
    bank = embedding.mel_filters()
    assert bank.shape == (40, 201)
    peaks = np.fft.rfftfreq(400, 1 / 16000)[bank.argmax(axis=1)]
    assert np.all(np.diff(peaks) >= 0) and peaks[0] < 100 and peaks[-1] > 7000
    # Slaney normalisation: each triangle's area is ~1 in Hz/2 (equal energy per band), so
    # the heights fall as the bands widen above 1 kHz
    assert bank.max(axis=1)[-1] < bank.max(axis=1)[5]


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 6])
def test_the_lstm_is_the_textbook_lstm_for_every_number_of_partials(batch):
    """Whichever way a batch is multiplied (row by row for a few partials, as one matrix for
    more), the network is torch's 3-layer LSTM: gates i, f, g, o, sigmoid and tanh, in float64."""
    w = embedding._weights()
    x = np.random.default_rng(batch).standard_normal((batch, 30, 40)).astype(np.float32)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    seq = x.astype(np.float64)
    for layer in range(3):
        w_ih, w_hh = (w[f"lstm.weight_{k}_l{layer}"].astype(np.float64) for k in ("ih", "hh"))
        bias = (w[f"lstm.bias_ih_l{layer}"] + w[f"lstm.bias_hh_l{layer}"]).astype(np.float64)
        h = c = np.zeros((batch, embedding.SIZE))
        out = []
        for t in range(seq.shape[1]):
            i, f, g, o = np.split(seq[:, t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out.append(h)
        seq = np.stack(out, axis=1)
    assert np.abs(embedding._lstm(x, w) - h).max() < 1e-4


def test_an_embedding_is_a_unit_vector_and_silence_has_none():
    e = voice_embedding(speech(PROMPTS["en"], "en", "v1", 0), sample_rate=SR)
    assert e.shape == (256,) and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5) and (e >= 0).all()
    assert np.isnan(voice_embedding(np.zeros(SR), sample_rate=SR)).all()


def test_the_same_voice_is_closer_than_another_voice_of_the_same_prompt():
    same, other = [], []
    for language in ("en", "zh"):
        e = {
            (v, s): voice_embedding(speech(PROMPTS[language], language, f"voice-{v}", s), sample_rate=SR)
            for v in range(3)
            for s in range(2)
        }
        same += [float(e[(v, 0)] @ e[(v, 1)]) for v in range(3)]
        other += [float(e[(a, s)] @ e[(b, s)]) for s in range(2) for a in range(3) for b in range(a + 1, 3)]
    assert np.mean(same) > np.mean(other)


def test_a_man_and_a_woman_are_far_apart():
    man = voice_embedding(speech("A deep male voice.", "en", "v1", 0), sample_rate=SR)
    woman = voice_embedding(speech("A bright young female voice.", "en", "v1", 0), sample_rate=SR)
    man_again = voice_embedding(speech("A deep male voice.", "en", "v1", 1), sample_rate=SR)
    assert float(man @ man_again) > float(man @ woman) + 0.15


def test_variation_and_pairwise_report_speaker_similarity_with_voice_embeddings():
    takes = [("deep man", {"median_f0_hz": 100.0}), ("deep man", {"median_f0_hz": 102.0}), ("woman", {})]
    clips = [speech("A deep male voice.", "en", "v1", 0), speech("A deep male voice.", "en", "v1", 1)]
    clips.append(speech("A bright young female voice.", "en", "v1", 0))
    embeddings = [voice_embedding(c, sample_rate=SR) for c in clips]
    pairs = pairwise(takes, embeddings=embeddings)
    assert pairs["speaker_similarity"].iloc[0] > pairs["speaker_similarity"].iloc[1]
    assert pairs["spectral_db"].isna().all()  # an MFCC distance of network embeddings means nothing
    table = variation(takes, embeddings=embeddings).set_index("voice_prompt")
    assert table.loc["deep man", "speaker_similarity"] > 0.8 and math.isnan(table.loc["woman", "speaker_similarity"])


# --- the Lab's verbs, on the simulator --------------------------------------------------------


@pytest.fixture
def lab(monkeypatch, tmp_path):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with serve(model_profiles={"*": {"design_latency": 0}}, enrollment_rps=None) as sim:
        yield Lab(
            tmp_path / "lab",
            backend="offline",
            base_url=sim.base_url,
            progress=False,
            measure=False,
            requests_per_second=None,
        )


def test_closest_ranks_the_take_whose_voice_says_the_reference(lab):
    takes = [
        lab.design("A deep, slow elderly male voice."),
        lab.design("A bright, high-pitched young female voice."),
        lab.design("A lively child's voice."),
    ]
    reference = lab.speak(takes[1], "The weather will be sunny tomorrow, with a light breeze.").audio
    ranked = lab.closest(reference)
    assert list(ranked["rank"]) == [1, 2, 3]
    assert ranked["take_id"].iloc[0] == takes[1].take_id
    assert ranked["similarity"].is_monotonic_decreasing and ranked["similarity"].iloc[0] > 0.8
    only_two = lab.closest(reference, takes=[takes[0].take_id, takes[2]])
    assert set(only_two["take_id"]) == {takes[0].take_id, takes[2].take_id}
    with pytest.raises(ValueError, match="no speech"):
        lab.closest(np.zeros(SR), sample_rate=SR)


def test_remeasure_brings_old_takes_up_to_date_and_is_logged(lab):
    fresh = lab.design("A warm, breathy female voice.")
    old = lab.design("A calm male voice.")
    lab.log.table.set_metrics(old.take_id, {"median_f0_hz": 111.0})  # as a take measured before versions
    assert "hnr_db" not in lab.log.get(fresh.take_id).metrics  # the lab did not measure (measure=False)

    report = lab.remeasure(predicted_quality=False).set_index("take_id")
    assert list(report["action"]) == ["measured", "measured"]
    assert report.loc[old.take_id, "old_version"] == 0 and report.loc[old.take_id, "new_version"] == VERSION
    for take_id in (fresh.take_id, old.take_id):
        metrics = lab.log.get(take_id).metrics  # stored in the log, with the version
        assert metrics["measures_version"] == VERSION and metrics["hnr_db"] > 0 and metrics["cpp_db"] > 0
    assert lab.log.get(old.take_id).metrics["median_f0_hz"] != 111.0
    frame = lab.log.to_dataframe()
    assert frame["m_spectral_centroid_hz"].notna().all()

    again = lab.remeasure()
    assert list(again["action"]) == ["up to date", "up to date"]
    forced = lab.remeasure(takes=[old.take_id], force=True, predicted_quality=False)
    assert list(forced["action"]) == ["measured"]


def test_without_voice_embeddings_there_is_no_speaker_similarity_column():
    """Issue 26, item 6: the column was all NaN with no explanation when only MFCC fingerprints
    (or nothing) were given; now it is left out, and present whenever voice embeddings are."""
    takes = [("deep man", {"median_f0_hz": 100.0}), ("deep man", {"median_f0_hz": 102.0})]
    clips = [speech("A deep male voice.", "en", "v1", 0), speech("A deep male voice.", "en", "v1", 1)]
    fingerprints = [speaker_embedding(c, sample_rate=SR) for c in clips]
    for given in (None, fingerprints):
        assert "speaker_similarity" not in variation(takes, embeddings=given).columns
        assert "speaker_similarity" not in pairwise(takes, embeddings=given).columns
    voices = [voice_embedding(c, sample_rate=SR) for c in clips]
    assert variation(takes, embeddings=voices)["speaker_similarity"].notna().all()
