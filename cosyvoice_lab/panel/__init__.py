"""The listening panel: a blind round served as a web page, for raters who do not run notebooks.

A shell (like ``widgets``) over the log and the views: ``cosyvoice-lab panel --experiment NAME``
or ``panel.start(lab.log, NAME)`` serves a page. The round (kind, items, seed, options, state) and each
rater's presentation order are kept in the log (``log.rounds``, ``log/rounds.py``), so a restarted
panel resumes every rater where they were (``resume=True``; the CLI resumes by default). Raters
come by invitation (``panel.invite("ana")`` / ``--invite ana``: a personal link with an
unguessable token) or, on loopback only, by typing a name (open enrolment; the page says so).
Names are compared exactly after Unicode NFC. Each answer is written to the log as it is given.

Kinds: *preference* (1-5 stars; nothing of model, prompt or voice reaches the page), *adherence*
(1-5 stars against each take's description, shown) and *pair* (two takes of one prompt from
different models, each model first in half the pairs; "first", "second" or "none"). Options:
hidden repeats (``repeat_share``), per-rater subsets (``subset_size``), ``must_play``,
``no_preference``, ``thank_you`` (``rounds.RoundOptions``). Server limits: ``PanelSettings``.

Binds 127.0.0.1 unless ``--host`` says otherwise; on any other address every request must carry
the random join token of the link (``?token=...``, compared in constant time; 403 without it).

The JSON API under the page (every answer ``application/json``; errors ``{"error": "..."}``):

``GET /api/session?invite=TOKEN`` or, with open enrolment, ``?rater=NAME``
    The rater's session (started on first call): ``{"session": S, "rater", "kind", "must_play",
    "no_preference", "thank_you", "items": [...]}`` in the rater's order. Star items:
    ``{"id": I, "label": "A", "audio_url": "/audio/...", "rating": null}`` (adherence adds
    ``"description"``); pair items: ``{"id", "label": "1", "audio_urls": [u1, u2], "choice": null}``.
    403: an invalid invite, a name where only invites are admitted, or a full round
    (``PanelSettings.max_raters``); 400: a bad name. ``S``, every ``I`` and audio URL are random
    tokens of this panel process: no take id, voice id, model, prompt or content hash.
``POST /api/rating`` with ``{"session": S, "item": I, "rating": 1-5}`` (star rounds)
``POST /api/choice`` with ``{"session": S, "item": I, "choice": "first" | "second" | "none"}`` (pairs)
    Records the answer (a second one replaces the first). 400: not that JSON object, a bad value,
    or the other kind's endpoint; 404: unknown session, or an item not of this session; 408: the
    body did not arrive within ``PanelSettings.body_timeout_s``; 413: a body over
    ``PanelSettings.max_body_bytes``. Answers ``{"ok": true, "item": I, "rating" or "choice",
    "rated": n, "total": m}``.
``GET /audio/<id>``
    The preview's bytes (WAV, MP3 or Ogg), from the log's audio store; 404 for an unknown id.

The organiser: ``Panel.url``, ``.invite(name)``, ``.progress()`` (per rater: answered / total,
repeats, consistency and its method), ``.ratings()``, ``.choices()``, ``.evidence()`` (star
ratings and pair choices as the evidence engine reads them; ``min_consistency`` leaves out
inconsistent raters, listed in ``Evidence.raters``), ``.stop()``.
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
