"""How the package writes HTML: the Jinja2 environment, escaping, the audio player and the
metric formats. Each view renders its own template with :func:`render`.

Escaping is decided here, once: the environment has autoescape on, and the snippets are built
with ``markupsafe.Markup.format``, which escapes every argument. Text from the log (prompts,
notes, tags, ids — possibly from a teammate's bundle) can therefore never become live markup.

Templates are package files in ``cosyvoice_lab/templates/*.html.j2``; their globals are the
player and the formats below. Public functions return plain ``str`` (what Jupyter and
``ipywidgets.HTML`` expect); inside this module, snippets travel as ``Markup`` so that a
template does not escape them a second time.

This module is the bottom of the core's display: it imports no other module of the package but
``errors``, and reads takes and audio by duck typing (their attributes), so that ``take`` and
``audio`` can render through it (a layers contract keeps it so).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from markupsafe import Markup
from markupsafe import escape as _escape

from cosyvoice_lab.errors import LogError

if TYPE_CHECKING:
    import jinja2


class Playable(Protocol):
    """What the player plays: anything with a ``data:`` URI of its bytes (an ``Audio``)."""

    def data_uri(self) -> str: ...


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


# --- escaping, the player, formats ------------------------------------------------------------------------------------
def escape(value: Any) -> str:
    """``value`` as text that is safe anywhere in HTML (element content or a quoted attribute)."""
    return str(_escape("" if value is None else value))


def player(audio: Playable, *, label: str = "") -> str:
    """A self-contained ``<audio>`` element (data URI, ``preload="metadata"``), usable in any page;
    ``label`` becomes its tooltip. The package's one player snippet."""
    return str(_player(audio, label))


def _player(audio: Playable, label: str | None, on_ended: Markup | None = None) -> Markup:
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


def speech_result(audio: Playable, *, voice_id: str, model: str, facts: str) -> str:
    """A synthesis result: its player, then voice, model and the billing facts in small print."""
    return str(Markup("{}<br><small>{} · {} · {}</small>").format(_player(audio, voice_id), voice_id, model, facts))


def card_player(take: Any, *, label: str = "", empty: str = "—") -> str:
    """A take's player for a result card (or why it has none): played to the end, it reports
    "heard" (see HEARD_SINK). Never raises: an unreadable preview is shown as its error."""
    return str(_take_player(take, label, empty, HEARD_SCRIPT))


def _take_player(take: Any, label: str | None = "", empty: str = "—", on_ended: Markup | None = None) -> Markup:
    if take.preview_missing:
        return Markup("<i>{}</i>").format(NO_PREVIEW_RECONCILED)
    try:
        audio = take.audio
    except (LogError, ValueError) as exc:  # a display must show the problem, not raise it
        return Markup("<span style='color:{}'>{}</span>").format(ERROR_COLOR, exc)
    if audio is not None:
        return _player(audio, label, on_ended)
    return Markup("<i>{}</i>").format(empty) if empty else Markup()


def status_text(take: Any) -> str:
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


def render(template: str, **context: Any) -> str:
    """The package template ``template`` (``templates/*.html.j2``) rendered with ``context``,
    autoescaped; its globals are the player (``player``, ``take_player``) and the formats."""
    return _environment().get_template(template).render(**context)


def report(
    sections: Sequence[Mapping[str, Any]],
    *,
    players: Mapping[str, Playable],
    folder: Any,
    generated: str | None,
    kbps: float,
) -> str:
    """The self-contained HTML page of the report (``log.export.export_html``): ``sections`` (one
    per experiment: name, counts, models, prompts with their takes, ``evidence`` HTML written by
    ``Evidence.html()``, ``plots`` as (title, image data URI)); ``players``: take id → the Audio to embed
    (compressed; a take without one shows ``take_player``'s reason). No link leaves the file; the
    layout fits the window (wide tables scroll in their own box, rows stack on a phone)."""
    sections = [{**s, "evidence": Markup(s.get("evidence") or "")} for s in sections]  # our own HTML
    return render(
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
