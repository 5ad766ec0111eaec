"""Lab: the workbench a notebook holds — a backend, an experiment log and defaults.

Notebook-facing verbs live here: ``design``, ``compare``, ``rerun``; the account's voices
(``voices``, ``quota``, ``verify``, ``reconcile``, ``cleanup``) come from ``account.py`` and
speaking (``speak``, ``estimate``, ``audition``) from ``speaking.py``. Widgets, notebooks and
the CLI call the Lab; the Lab calls the pure core (design, prompts, analysis), the client and
the log.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlparse

from cosyvoice_lab import catalog
from cosyvoice_lab.lab.account import AccountVerbs
from cosyvoice_lab.service.http import DashScopeClient, RetryPolicy
from cosyvoice_lab.views.comparison import Comparison
from cosyvoice_lab.credentials import find_api_key
from cosyvoice_lab.design import VoiceDesign, detect_language
from cosyvoice_lab.errors import APIError, CosyVoiceLabError, OutcomeUnknown, TransportError, ValidationError
from cosyvoice_lab.lab.runner import run_tasks
from cosyvoice_lab.service.ratelimit import RateLimiter
from cosyvoice_lab.lab.speaker import SpeakingVerbs
from cosyvoice_lab.take import Takes

log = logging.getLogger("cosyvoice_lab.lab.lab")

DEFAULT_PREVIEW = {
    "en": "Hello! This is a preview of a newly designed voice. How does it sound to you?",
    "zh": "大家好，这是新设计的声音的试听。你觉得听起来怎么样？",
}


def _prompt_text(prompt, language: str) -> tuple[str, dict | None]:
    """A voice prompt string and, for a PromptSpec, its JSON for the log."""
    if isinstance(prompt, str):
        return prompt, None
    if hasattr(prompt, "render") and hasattr(prompt, "to_dict"):
        return prompt.render(language), prompt.to_dict()
    raise TypeError(f"a prompt must be a str or a PromptSpec, got {type(prompt).__name__}")


class Lab(AccountVerbs, SpeakingVerbs):
    """A workbench: ``Lab(folder, backend="auto")``.

    Args:
        folder: where the experiment log and audio live (created if missing).
        backend: ``"auto"`` (the real service when an API key is found, else the offline
            simulator), ``"dashscope"`` (a key is required) or ``"offline"``.
        api_key: a key for the real service (else ``DASHSCOPE_API_KEY`` / credentials file).
        base_url: talk to another server speaking the protocol (e.g. a separately started
            ``cosyvoice-lab offline``); default ``DASHSCOPE_HTTP_BASE_URL`` (as the dashscope SDK
            reads it), else the region's endpoint. The WebSocket URL follows it, or
            ``DASHSCOPE_WEBSOCKET_BASE_URL``.
        region, model, prefix, preview_text, sample_rate, response_format: defaults for designs.
        concurrency: parallel requests in ``compare``; rate: requests/second allowed (all voice
            actions share it; the service allows 10).
        measure: measure every preview (pitch, loudness, rate) and store it with the take.
        progress: show progress bars.
    """

    def __init__(self, folder: str | Path = "cosyvoice-lab", *, backend: str = "auto", api_key=None,
                 base_url: str | None = None, region: str = catalog.DEFAULT_REGION,
                 model: str = catalog.DEFAULT_MODEL, prefix: str = catalog.DEFAULT_PREFIX,
                 preview_text: str | None = None, sample_rate: int = catalog.DEFAULT_PREVIEW_SAMPLE_RATE,
                 response_format: str = catalog.DEFAULT_PREVIEW_FORMAT, concurrency: int = 4,
                 rate: float | None = catalog.DEFAULT_CLIENT_RPS, measure: bool = True, progress: bool = True,
                 retry: RetryPolicy = RetryPolicy(), timeout: float = catalog.CREATE_TIMEOUT_S):
        from cosyvoice_lab.log.experiment_log import ExperimentLog

        self.log = ExperimentLog(folder)
        self.region, self.model, self.prefix = region, model, prefix
        self.preview_text, self.sample_rate, self.response_format = preview_text, sample_rate, response_format
        self.concurrency, self.measure, self.progress = concurrency, measure, progress
        self.limiter = RateLimiter(rate)
        self._reconcile_lock = threading.Lock()
        self._synthesizer = None
        self.simulator = None
        self.client = self._make_client(backend, api_key, base_url, retry, timeout)

    def _make_client(self, backend, api_key, base_url, retry, timeout) -> DashScopeClient:
        if backend not in ("auto", "dashscope", "offline"):
            raise ValueError(f"backend must be 'auto', 'dashscope' or 'offline', got {backend!r}")
        common = dict(region=self.region, retry=retry, create_timeout=timeout, throttle=self.limiter.acquire)
        if backend != "offline":  # the dashscope SDK's own variable for another endpoint (contract §7.1)
            base_url = base_url or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or None
        key = find_api_key(api_key) if backend != "offline" or base_url else None
        if base_url:  # a separately started simulator (or a proxy to the real service)
            offline = backend == "offline" or urlparse(base_url).hostname in ("127.0.0.1", "localhost", "::1")
            # the simulator's documented key only for a simulator; anything else needs a real one
            return DashScopeClient(api_key=key or (catalog.OFFLINE_API_KEY if offline else None), base_url=base_url,
                                   backend="offline" if offline else "dashscope", **common)
        if backend == "dashscope" or (backend == "auto" and key is not None):
            return DashScopeClient(api_key=key, backend="dashscope", **common)  # raises without a key
        from cosyvoice_lab.offline import shared

        self.simulator = shared(self.log.folder / "offline-voices")
        return DashScopeClient(api_key=self.simulator.api_key, base_url=self.simulator.base_url,
                               backend="offline", **common)

    @property
    def backend(self) -> str:
        return self.client.backend

    @property
    def offline(self) -> bool:
        return self.client.backend == "offline"

    def __repr__(self):
        where = ("OFFLINE simulator on " + self.client.host + " (no real voices are made)") if self.offline \
            else f"{self.client.backend} {self.region} ({self.client.host})"
        return f"<Lab {where}; log {self.log.folder}; model {self.model}>"

    def _repr_html_(self):
        color = "#b45309" if self.offline else "#047857"
        return (f'<div><b>cosyvoice_lab Lab</b> — backend: <b style="color:{color}">'
                f'{"OFFLINE simulator" if self.offline else "DashScope " + self.region}</b> '
                f'({self.client.host}); log: <code>{self.log.folder}</code>; model: {self.model}</div>')

    # --- building designs -----------------------------------------------------------------
    def make_design(self, prompt, *, preview_text: str | None = None, model: str | None = None,
                    prefix: str | None = None, language: str | None = None) -> tuple[VoiceDesign, dict | None]:
        """The VoiceDesign (unvalidated) for a prompt with this lab's defaults, plus the spec JSON."""
        preview = preview_text or self.preview_text
        lang = language or (detect_language(preview) if preview else None)
        if lang is None and isinstance(prompt, str):
            lang = detect_language(prompt)
        lang = lang or "en"
        text, spec = _prompt_text(prompt, lang)
        design = VoiceDesign(voice_prompt=text, preview_text=preview or DEFAULT_PREVIEW[lang],
                             target_model=model or self.model, prefix=prefix or self.prefix,
                             language=language, sample_rate=self.sample_rate,
                             response_format=self.response_format, region=self.region)
        return design, spec

    # --- one take -------------------------------------------------------------------------
    def run_design(self, design: VoiceDesign, *, experiment: str | None = None, prompt_spec: dict | None = None,
                   parent_take_id: str | None = None, cell: str | None = None, repeat: int | None = None):
        """Send one design, logging it before and after. Returns the Take (ok or failed)."""
        take = self.log.start(design, experiment=experiment, backend=self.backend, region=self.region,
                              host=self.client.host, prompt_spec=prompt_spec, parent_take_id=parent_take_id,
                              cell=cell, repeat=repeat)
        try:
            created = self.client.create_voice(design)
        except OutcomeUnknown as exc:
            # Reconciled once no request is in flight (see reconcile()): a voice another
            # in-flight request stored could otherwise be adopted twice.
            return self.log.fail(take.take_id, error_code="OutcomeUnknown", error_message=str(exc),
                                 status="unknown")
        except APIError as exc:
            return self.log.fail(take.take_id, error_code=exc.code, error_message=exc.message,
                                 request_id=exc.request_id)
        except (TransportError, ValidationError) as exc:
            return self.log.fail(take.take_id, error_code=type(exc).__name__, error_message=str(exc))
        except Exception as exc:  # an answer we could not read (e.g. no voice_id): a voice may exist
            self.log.fail(take.take_id, error_code=type(exc).__name__, status="unknown",
                          error_message=f"unexpected answer: {exc}")
            raise
        except BaseException:  # Ctrl-C mid-request: the voice may exist; reconcile will tell
            self.log.fail(take.take_id, error_code="Interrupted", status="interrupted",
                          error_message="interrupted while the request was in flight; a voice may have been created")
            raise
        metrics = self._measure(created.preview, design)
        return self.log.finish(take.take_id, voice_id=created.voice_id, request_id=created.request_id,
                               audio=created.preview, latency_s=created.latency_s, metrics=metrics)

    def _measure(self, audio, design: VoiceDesign) -> dict | None:
        if not self.measure:
            return None
        try:
            from cosyvoice_lab.analysis.measures import measure

            return measure(audio, text=design.preview_text, language=design.language_hint).to_dict()
        except Exception as exc:  # noqa: BLE001 - a measurement must never lose a take
            log.warning("could not measure preview: %s", exc)
            return None

    def design(self, prompt, *, preview_text: str | None = None, model: str | None = None,
               prefix: str | None = None, language: str | None = None, n: int = 1,
               experiment: str | None = None, parent=None):
        """Design a voice from a description (str or PromptSpec); ``n`` candidates.

        Returns:
            a Take (n=1) or a list of N Takes, each logged (failed ones carry the error).
        Raises:
            ValidationError: the design breaks a rule (nothing is sent).
        """
        design, spec = self.make_design(prompt, preview_text=preview_text, model=model, prefix=prefix, language=language)
        design.validate()
        parent_id = getattr(parent, "take_id", parent)
        tasks = [lambda: self.run_design(design, experiment=experiment, prompt_spec=spec, parent_take_id=parent_id)
                 for _ in range(n)]
        takes = [tasks[0]()] if n == 1 else run_tasks(
            tasks, concurrency=self.concurrency, desc="designing", progress=self.progress,
            is_failure=lambda t: not t.ok).results
        takes = self.settle(takes)
        return takes[0] if n == 1 else Takes(takes)

    def settle(self, takes: list) -> list:
        """Finish takes once their requests are done: reconcile those whose outcome is unknown,
        then record the status the service reports for the new voices. Returns them re-read."""
        takes = [self._reconcile(t.take_id) if t.status == "unknown" else t for t in takes]
        if any(t.ok for t in takes) and self._verified({t.design.prefix for t in takes if t.ok}):
            takes = [self.log.get(t.take_id) for t in takes]
        return takes

    def rerun(self, take):
        """Send a past take's exact design again; the new take records it as its parent."""
        take = self.log.get(getattr(take, "take_id", take))
        return self.settle([self.run_design(take.design, experiment=take.experiment, prompt_spec=take.prompt_spec,
                                            parent_take_id=take.take_id)])[0]

    # --- many takes -----------------------------------------------------------------------
    def compare(self, prompts: Sequence, *, models: Iterable[str] = catalog.COMPARE_MODELS, repeats: int = 3,
                preview_text: str | None = None, experiment: str | None = None, new_repeats: bool = False,
                prefix: str | None = None, check_quota: bool = True, verify: bool = True) -> Comparison:
        """Every prompt on every model, ``repeats`` times, side by side.

        Re-running the same call (same experiment) only does the cells that are missing or
        failed; ``new_repeats=True`` draws ``repeats`` more per prompt and model. Before
        sending, the account's voices are counted (one list request; ``check_quota=False``
        skips it) and a warning says if the run would pass the 1000-voice limit. Afterwards
        one more listing records each new voice's status as the service reports it
        (``verify=False`` skips it).

        Raises:
            ValidationError: any cell is invalid (all problems listed; nothing is sent).
        """
        models = tuple(models)
        if repeats < 1 or not prompts or not models:
            raise ValueError("compare needs at least one prompt, one model and repeats >= 1")
        cells = self._plan(prompts, models, preview_text, prefix)
        experiment = experiment or _experiment_name(cells)
        self.reconcile(experiment)  # a request that may have stored a voice: adopt it rather than redo it
        existing = self.log.takes(experiment=experiment)
        todo = self._todo(cells, repeats, existing, new_repeats)
        if check_quota:
            self._check_quota(len(todo))
        tasks = [(lambda d=d, s=s, c=c, r=r: self.run_design(d, experiment=experiment, prompt_spec=s, cell=c, repeat=r))
                 for d, s, c, r in todo]
        result = run_tasks(tasks, concurrency=self.concurrency, desc=f"compare {experiment}",
                           progress=self.progress, is_failure=lambda t: not t.ok)
        self.reconcile(experiment)
        if verify and result.done:
            self._verified({d.prefix for d, *_ in todo})
        if result.interrupted:
            warnings.warn(f"interrupted: {result.done} take(s) finished, {result.skipped} not started; "
                          f"run the same compare again to finish", RuntimeWarning, stacklevel=2)
        prompts_in_order = list(dict.fromkeys(c[0].voice_prompt for c in cells))
        return Comparison(self.log, experiment, prompts_in_order, models, interrupted=result.interrupted)

    def _plan(self, prompts, models, preview_text, prefix):
        """(design, spec, cell-base) for every prompt × model; all problems raised at once."""
        cells, problems = [], []
        for i, prompt in enumerate(prompts):
            for model in models:
                design, spec = self.make_design(prompt, preview_text=preview_text, model=model, prefix=prefix)
                key = hashlib.sha1(json.dumps([design.voice_prompt, design.preview_text]).encode()).hexdigest()[:10]
                for p in design.problems():
                    problems.append(type(p)(f"prompt {i} × {model}: {p.field}", p.rule, p.message))
                cells.append((design, spec, f"{key}|{model}"))
        if problems:
            raise ValidationError(problems, context="compare: nothing was sent")
        return cells

    @staticmethod
    def _todo(cells, repeats, existing, new_repeats):
        by_cell = {}
        for t in existing:
            by_cell.setdefault(t.cell, []).append(t)
        todo = []
        for design, spec, base in cells:
            taken = [t for t in existing if t.cell and t.cell.startswith(base + "|")]
            start = (max((t.repeat or 0 for t in taken), default=-1) + 1) if new_repeats else 0
            for r in range(start, start + repeats):
                cell = f"{base}|r{r}"
                if not any(t.ok or t.status in ("pending", "unknown", "interrupted") for t in by_cell.get(cell, [])):
                    todo.append((design, spec, cell, r))
        return todo

    def _check_quota(self, adding: int) -> int | None:
        if not adding:
            return None
        try:
            held = self.quota()["held"]
        except CosyVoiceLabError as exc:
            log.warning("could not count the account's voices: %s", exc)
            return None
        if held + adding > catalog.VOICE_QUOTA:
            warnings.warn(f"the account holds {held} voices; {adding} more would pass the limit of "
                          f"{catalog.VOICE_QUOTA} — run lab.cleanup() first", RuntimeWarning, stacklevel=3)
        return held

def _experiment_name(cells) -> str:
    """A stable name for a compare of these prompts and models, so running it again resumes it."""
    digest = hashlib.sha1(json.dumps([c[2] for c in cells]).encode()).hexdigest()[:8]
    return f"compare-{digest}"


# Public classes report the module users import them from.
Lab.__module__ = "cosyvoice_lab"
