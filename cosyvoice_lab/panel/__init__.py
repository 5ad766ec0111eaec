"""The listening panel: a blind round served as a web page, for raters who do not run notebooks.

A shell (like ``widgets``) over the log and the views: ``cosyvoice-lab panel --experiment NAME``
or ``panel.start(lab.log, NAME)`` serves a page; each rater opens the link, gives a name and gets their own
session: every ok take of the experiment with a preview, shuffled under a fresh random seed kept
on the server, labelled A, B, ... Each rating (1-5) is written to the log as it is given
(``log.add_rating(take, rating, rater=NAME, kind=KIND, session_id=...)``), so a closed tab loses
nothing rated, and the same name opens the same session again while the panel runs. In a
*preference* round nothing of the model, the prompt or the voice reaches the page; an
*adherence* round shows each take's description (its voice prompt) to judge against.

Binds 127.0.0.1 unless ``--host`` says otherwise; on any other address every request must carry
the random join token of the link (``?token=...``, compared in constant time; 403 without it).

The JSON API under the page (every answer ``application/json``; errors ``{"error": "..."}``):

``GET /api/session?rater=NAME``
    Starts or resumes NAME's session (1-64 printable characters; 400 otherwise; 404 when the
    experiment has nothing to hear). Answers ``{"session": S, "rater": NAME, "kind": KIND,
    "items": [{"id": I, "label": "A", "audio_url": "/audio/...", "rating": null}, ...]}`` in
    the rater's order; ``rating`` is what this session gave so far; adherence items also carry
    ``"description"``. ``S`` and every ``I`` and audio URL are random tokens of this session:
    no take id, voice id, model, prompt or content hash.
``POST /api/rating`` with ``{"session": S, "item": I, "rating": 1-5}``
    Records the rating (a second one replaces the first). 400: not that JSON object, or a
    rating that is not an integer 1-5; 404: unknown session, or an item not of this session;
    413: a body over ``PanelSettings.max_body_bytes``. Answers ``{"ok": true, "item": I,
    "rating": R, "rated": n, "total": m}``.
``GET /audio/<id>``
    The preview's bytes (WAV, MP3 or Ogg), from the log's audio store; 404 for an unknown id.

The organiser: ``Panel.url``, ``.progress()`` (per rater: rated / total), ``.ratings()``,
``.evidence()`` (``Comparison.evidence`` with every rater's ratings), ``.stop()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cosyvoice_lab.panel.server import Panel, start

__all__ = ["Panel", "start"]


def __getattr__(name: str) -> Any:
    # lazy: ``cosyvoice-lab --help`` imports cli.panel, which must not load the log and the views
    if name in __all__:
        from cosyvoice_lab.panel import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
