"""The one place that writes HTML: escaping, the audio player, metric formats and the templates.

Every repr, card, grid and report of the package is produced here, so escaping is decided once:
the Jinja2 environment has autoescape on, and the small helpers build their snippets with
``markupsafe.Markup.format``, which escapes every argument. Text from the log (prompts, notes,
tags, ids — possibly from a teammate's bundle) can therefore never become live markup.

Templates are package files in ``cosyvoice_lab/templates/*.html.j2``. Public functions return
plain ``str`` (what Jupyter and ``ipywidgets.HTML`` expect); inside this module, snippets travel
as ``Markup`` so that a template does not escape them a second time.

The one element not written here is the ``<audio>`` player itself: ``Audio.html`` writes it
(escaping its label), because the service layer shows Audio but may not import this module.

This module is core: it never imports ipywidgets, pandas, or anything from ``log``, ``lab``,
``views`` or ``widgets``; objects from there are read by duck typing (their attributes).
"""

from __future__ import annotations

import functools
import math
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from markupsafe import escape as _escape

from cosyvoice_lab.errors import LogError

if TYPE_CHECKING:  # take.py imports this module at runtime: no cycle
    import jinja2

    from cosyvoice_lab.audio import Audio
    from cosyvoice_lab.take import Take

NO_PREVIEW_RECONCILED = "no preview (voice reconciled from the service's list)"
# (metrics key, label, format); keys are those of analysis.Measurements.to_dict()
METRICS = (
    ("median_f0_hz", "F0", "{:.0f} Hz"),
    ("speaking_rate", "rate", "{:.1f}"),
    ("loudness_lufs", "loudness", "{:.1f} LUFS"),
    ("duration_s", "duration", "{:.1f} s"),
    ("hnr_db", "HNR", "{:.1f} dB"),
    ("cpp_db", "CPP", "{:.1f} dB"),
    ("jitter_percent", "jitter", "{:.2f} %"),
    ("shimmer_percent", "shimmer", "{:.1f} %"),
    ("spectral_tilt_db_oct", "tilt", "{:.1f} dB/oct"),
    ("spectral_centroid_hz", "centroid", "{:.0f} Hz"),
    ("f0_sd_semitones", "pitch sd", "{:.1f} st"),
    ("intensity_sd_db", "level sd", "{:.1f} dB"),
    ("dnsmos_ovrl", "DNSMOS", "{:.2f}"),
)
CARD_METRICS = ("median_f0_hz", "speaking_rate", "loudness_lufs", "hnr_db", "dnsmos_ovrl")
_RATE_UNITS = {"chars_per_s": "chars/s", "letters_per_s": "letters/s"}
ERROR_COLOR = "#b91c1c"


# --- one-liners ------------------------------------------------------------------------------------
def escape(value: Any) -> str:
    """``value`` as text that is safe anywhere in HTML (element content or a quoted attribute)."""
    return str(_escape("" if value is None else value))


def player(audio: Audio, *, label: str = "") -> str:
    """A self-contained ``<audio>`` element (data URI, ``preload="metadata"``), usable in any page;
    ``label`` becomes its tooltip. The package's one player snippet."""
    return str(_player(audio, label))


def _player(audio: Audio, label: str | None, on_ended: Markup | None = None) -> Markup:
    title = Markup(' title="{}"').format(label) if label else ""
    if on_ended:
        title += Markup(' onended="{}"').format(str(on_ended))  # escaped as any attribute value
    return Markup('<audio controls preload="metadata"{} src="{}"></audio>').format(title, audio.data_uri())


# A result card's player tells the kernel when it was played to the end. ipywidgets cannot see an
# <audio> element's events, so its onended handler types "ended" into the card's hidden Text
# widget (class HEARD_SINK), which syncs to the kernel as typing does. Constant text, no user data.
HEARD_SINK = "cosyvoice-heard"
HEARD = "ended"
HEARD_SCRIPT = Markup(
    "var c=this.closest('.cosyvoice-take-card'),s=c&&c.querySelector('.{} input');"
    "if(s){{s.value='{}';s.dispatchEvent(new Event('input',{{bubbles:true}}));}}"
).format(HEARD_SINK, HEARD)


def speech_result(audio: Audio, *, voice_id: str, model: str, facts: str) -> str:
    """A synthesis result: its player, then voice, model and the billing facts in small print."""
    return str(Markup("{}<br><small>{} · {} · {}</small>").format(_player(audio, voice_id), voice_id, model, facts))


def take_player(take: Take, *, label: str = "", empty: str = "—") -> str:
    """A take's preview player, or why there is none (``empty`` when it simply has no preview).

    Never raises: a missing or unreadable audio file is shown as its error message.
    """
    return str(_take_player(take, label, empty))


def card_player(take: Take, *, label: str = "", empty: str = "—") -> str:
    """``take_player`` for a result card: played to the end, it reports "heard" (see HEARD_SINK)."""
    return str(_take_player(take, label, empty, HEARD_SCRIPT))


def _take_player(take: Take, label: str | None = "", empty: str = "—", on_ended: Markup | None = None) -> Markup:
    if take.preview_missing:
        return Markup("<i>{}</i>").format(NO_PREVIEW_RECONCILED)
    try:
        audio = take.audio
    except (LogError, ValueError) as exc:  # a display must show the problem, not raise it
        return Markup("<span style='color:{}'>{}</span>").format(ERROR_COLOR, exc)
    if audio is not None:
        return _player(audio, label, on_ended)
    return Markup("<i>{}</i>").format(empty) if empty else Markup()


def status_text(take: Take) -> str:
    """The status, its error and the latency, e.g. ``failed: InvalidParameter bad prompt (0.12 s)``."""
    text = take.status
    if take.error_code or take.error_message:
        text += f": {take.error_code or ''} {take.error_message or ''}".rstrip()
    if take.latency_s is not None:
        text += f" ({take.latency_s:.2f} s)"
    return text


def metric_texts(metrics: Mapping[str, Any] | None, keys: Iterable[str] = CARD_METRICS) -> list[str]:
    """["F0 112 Hz", "rate 13.2 letters/s", …] for the ``keys`` measured (None and NaN skipped)."""
    metrics = metrics or {}
    wanted = set(keys)
    parts = []
    for key, label, fmt in METRICS:
        value = metrics.get(key)
        if key not in wanted or isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            continue
        text = fmt.format(value)
        if key == "speaking_rate":
            text += " " + _RATE_UNITS.get(str(metrics.get("rate_unit")), "units/s")
        parts.append(f"{label} {text}")
    return parts


def measurements_text(metrics: Mapping[str, Any] | None) -> str:
    """A card's measurements line, ``F0 112 Hz · rate 13.2 letters/s · loudness -21.4 LUFS`` ('' if none)."""
    return " · ".join(metric_texts(metrics))


def short_model(model: str) -> str:
    """The model name without its family prefix: ``cosyvoice-v3.5-plus`` → ``v3.5-plus``."""
    return model.removeprefix("cosyvoice-")


def shorten(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, the last one an ellipsis when cut."""
    return text if len(text) <= n else text[: n - 1] + "…"


def utc_text(dt: datetime | None) -> str:
    """A time as ``2025-01-31 08:00:00`` in UTC ('' for None); also takes a pandas Timestamp."""
    if dt is None:
        return ""
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def bold(text: str) -> str:
    """``<b>text</b>``."""
    return str(Markup("<b>{}</b>").format(text))


def numbered_prompt(index: int, prompt: str) -> str:
    """A grid's row heading: "**0**. the prompt"."""
    return str(Markup("<div style='max-width:22em'><b>{}</b>. {}</div>").format(index, prompt))


def blind_description(prompt: str) -> str:
    """An adherence round's question above a blind card: the description to judge the voice by."""
    return str(Markup("<div style='max-width:22em'>How well does this voice match: <i>{}</i></div>").format(prompt))


EMPTY_CELL = "<i>—</i>"
"""What a grid cell without takes shows."""


def counters(text: str, *, over: bool) -> str:
    """The builder's length counters, red when a text is over its limit."""
    color = ERROR_COLOR if over else "#52525b"
    return str(Markup("<span style='color:{};font-family:monospace'>{}</span>").format(color, text))


def check_messages(problems: Sequence[str], warnings: Sequence[str]) -> str:
    """Problems (✗, red) then warnings (⚠, amber); "✓ ready to design" when there are none."""
    return _render("messages.html.j2", problems=problems, warnings=warnings)


def warning(text: str) -> str:
    """A warning line (⚠, amber), e.g. a card's "this voice was deleted"."""
    return str(Markup("<div style='color:#b45309'>⚠ {}</div>").format(text))


def edited_note() -> str:
    """The builder's note that the prompt text was edited by hand."""
    return (
        "<i style='color:#92400e'>✎ edited by hand — your text is kept when the choices change; "
        "re-render to replace it</i>"
    )


def blind_status(session_id: str, seed: int | None, rated: int, total: int, still_to_rate: Sequence[str] = ()) -> str:
    """A blind session's progress: ``blind session <id>: 3/8 rated — still to rate: A, C``; the
    seed (``, seed 7``) only once revealed: with the take ids it uncovers the labels."""
    shown = Markup("") if seed is None else Markup(", seed {}").format(seed)
    text = Markup("blind session {}{}: {}/{} rated").format(session_id, shown, rated, total)
    if still_to_rate:
        text += Markup(" — still to rate: {}").format(", ".join(still_to_rate))
    return str(text)


def reveal_warning(rated: int, total: int, unrated: Sequence[str], *, revealed: bool = False) -> str:
    """What the board says before (or, from code, after) revealing a round with unrated items."""
    if revealed:
        text = Markup("<b>Revealed with {} of {} unrated</b> ({}): the summary rests on {} rating{}.")
        return str(text.format(total - rated, total, ", ".join(unrated), rated, "" if rated == 1 else "s"))
    text = Markup(
        "<b>Only {} of {} rated.</b> Still unrated: {}. Revealing ends the blind round: these cannot be "
        "rated blind afterwards. Click again to reveal anyway."
    )
    return str(text.format(rated, total, ", ".join(unrated)))


# --- templates ---------------------------------------------------------------------------------------
@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2  # loaded on the first render, not with the package

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cosyvoice_lab", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        player=_player,
        take_player=_take_player,
        status_text=status_text,
        measurements_text=measurements_text,
        metric_texts=metric_texts,
        short_model=short_model,
        shorten=shorten,
        utc_text=utc_text,
        error_color=ERROR_COLOR,
    )
    return env


def _render(name: str, **context: Any) -> str:
    return _environment().get_template(name).render(**context)


def take_card(take: Take) -> str:
    """A take as a table: prompt, preview text, model, voice id, status, rating, tags, notes, player."""
    return _render("take.html.j2", take=take)


def takes_grid(takes: Iterable[Take]) -> str:
    """Take cards side by side (wrapping)."""
    return _render("takes.html.j2", takes=list(takes))


def take_detail(take: Take) -> str:
    """What was asked and what came back, every field of a take (the log browser's detail)."""
    metrics = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted((take.metrics or {}).items())
    )
    return _render("take_detail.html.j2", take=take, metrics=metrics)


def card_header(take: Take, *, label: str | None = None, blind: bool = False) -> str:
    """A result card's heading: label, model, voice id, kept/heard state and the prompt.

    Blind: only the label; no state either (kept, heard, DELETED would tell voices apart).
    """
    return _render("card_header.html.j2", take=take, label=label, blind=blind)


def card_details(take: Take) -> str:
    """A result card's measurements, or the error of a failed take."""
    return _render("card_details.html.j2", take=take)


def error_report(exc: BaseException, context: str = "") -> str:
    """An exception shown in a widget: message first, the traceback folded underneath."""
    head = f"{context + ': ' if context else ''}{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return _render("error.html.j2", head=head, trace=trace)


def log_table(rows: Sequence[Mapping[str, Any]], selected: str | None = None) -> str:
    """The log browser's table. ``rows``: display texts per take (take_id, started, experiment,
    model, status, rating, chosen, played, tags, prompt); ``selected``: the take id to highlight."""
    return _render("log_table.html.j2", rows=rows, selected=selected)


def comparison_grid(
    experiment: str, models: Sequence[str], rows: Sequence[tuple[str, Sequence[Sequence[Take]]]], *, pending: int = 0
) -> str:
    """Prompts × models: ``rows`` are ``(prompt, [takes of each model, in models' order])``;
    each cell shows the players of its repeats (or why a take has none). ``pending``: takes
    whose measures are still being computed (said under the title)."""
    return _render("comparison.html.j2", experiment=experiment, models=models, rows=rows, pending=pending)


def audition(script: str, takes: Sequence[Any], results: Sequence[Any]) -> str:
    """Voices side by side on one script: each take's model, prompt and its SpeechResult or error."""
    cells = [
        {
            "model": getattr(take, "model", ""),
            "prompt": getattr(take, "prompt", None) or str(getattr(take, "voice_id", take)),
            "result": result,
            "ok": hasattr(result, "audio"),
        }
        for take, result in zip(takes, results, strict=False)
    ]
    return _render("audition.html.j2", script=script[:200], cells=cells)


def reveal_summary(
    *,
    session_id: str,
    seed: int,
    rated: int,
    rows: Sequence[Any],
    models: Sequence[tuple[str, str]],
    prompts: Sequence[tuple[str, str]],
) -> str:
    """A blind session uncovered: mean rating per model (``models``: name, text) and per prompt
    (``prompts``: heading, text), then every label with its model, prompt, rating and take."""
    return _render(
        "reveal.html.j2", session_id=session_id, seed=seed, rated=rated, rows=rows, models=models, prompts=prompts
    )


def evidence_table(**context: Any) -> str:
    """A comparison's evidence (``experiment``): the primary ``rows`` (question, estimate, interval
    with its confidence, n, adjusted p, verdict; ``found`` in bold), the ``exploratory`` ones
    folded, the blind ``preferences``, then ``next_steps`` for the open primary questions."""
    return _render("evidence.html.j2", **context)


def panel_page(*, kind: str, script: str, open_enrolment: bool = True) -> str:
    """The listening panel's page (``panel/``): a ``kind`` round's instructions and, with
    ``open_enrolment``, a name form (said to be open to anyone on this machine); its ``script``
    (a URL path) fetches the session (by the personal link's invite or the name) and shows the
    items. No data of the round."""
    return _render("panel.html.j2", kind=kind, script=script, open_enrolment=open_enrolment)


def panel_refused(message: str) -> str:
    """The page a person who opened the listening panel without a valid link reads (``message``
    says what to do); nothing of the round."""
    return _render("panel_refused.html.j2", message=message)


def sweep_table(**context: Any) -> str:
    """A sweep (``dimension``, ``baseline``, ``experiment``, ``model``): ``rows`` of value × measure
    (estimate, interval, n, adjusted p, verdict; ``found`` in bold), then ``prompts`` (value, prompt)."""
    return _render("sweep.html.j2", **context)


def history_table(**context: Any) -> str:
    """A take's lineage (``take_id``, ``note``): ``rows`` per version (kind, change, model, status,
    ratings, ``measures`` texts under the ``measures`` names, prompt; ``current`` in bold)."""
    return _render("history.html.j2", **context)


def listening_round(*, kind: str, rater: str, cards: Sequence[tuple[str, Any, str, int | None]], rated: int) -> str:
    """A blind listening round: ``cards`` are ``(label, take, description or "", rating)`` in
    presentation order; only the label, the player (no tooltip), the description (adherence
    rounds) and the rating given in this round are shown."""
    return _render("listening.html.j2", kind=kind, rater=rater, cards=cards, rated=rated)


def lab_summary(*, offline: bool, region: str, host: str, folder: Any, model: str) -> str:
    """A Lab in one line: backend (OFFLINE in amber), host, log folder and model."""
    return _render("lab.html.j2", offline=offline, region=region, host=host, folder=folder, model=model)


def report(
    sections: Sequence[Mapping[str, Any]],
    *,
    players: Mapping[str, Audio],
    folder: Any,
    generated: str | None,
    kbps: float,
) -> str:
    """The self-contained HTML page of the report (``log.export.export_html``): ``sections`` (one
    per experiment: name, counts, models, prompts with their takes, ``evidence`` HTML written by
    this module, ``plots`` as (title, image data URI)); ``players``: take id → the Audio to embed
    (compressed; a take without one shows ``take_player``'s reason). No link leaves the file; the
    layout fits the window (wide tables scroll in their own box, rows stack on a phone)."""
    sections = [{**s, "evidence": Markup(s.get("evidence") or "")} for s in sections]  # our own HTML
    return _render(
        "report.html.j2",
        sections=sections,
        players=players,
        folder=folder,
        generated=generated,
        kbps=kbps,
        total=sum(s["total"] for s in sections),
        with_audio=sum(1 for s in sections for p in s["prompts"] for t in p["takes"] if t.audio_path),
        report_metrics=tuple(key for key, _, _ in METRICS),
    )
