"""The small HTML pieces of the widget shells: headings, counters, messages, a blind session's
progress. Built with ``markupsafe.Markup.format``, which escapes every argument."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

from cosyvoice_lab import html


def bold(text: str) -> str:
    """``<b>text</b>``."""
    return str(Markup("<b>{}</b>").format(text))


def numbered_prompt(index: int, prompt: str) -> str:
    """A grid's row heading: "**0**. the prompt"."""
    return str(Markup("<div style='max-width:22em'><b>{}</b>. {}</div>").format(index, prompt))


def blind_description(prompt: str) -> str:
    """An adherence round's question above a blind card: the description to judge the voice by."""
    return str(Markup("<div style='max-width:22em'>How well does this voice match: <i>{}</i></div>").format(prompt))


EMPTY_CELL = "<i>—</i>"  # what a grid cell without takes shows


def counters(text: str, *, over: bool) -> str:
    """The builder's length counters, red when a text is over its limit."""
    color = html.ERROR_COLOR if over else "#52525b"
    return str(Markup("<span style='color:{};font-family:monospace'>{}</span>").format(color, text))


def check_messages(problems: Sequence[str], warnings: Sequence[str]) -> str:
    """Problems (✗, red) then warnings (⚠, amber); "✓ ready to design" when there are none."""
    return html.render("messages.html.j2", problems=problems, warnings=warnings)


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
