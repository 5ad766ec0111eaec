"""Lab: the workbench a notebook holds — a backend, an experiment log and defaults.

Notebook-facing verbs live here: ``design``, ``compare``, ``voices``, ``cleanup`` (and
``speak``/``audition``). Widgets, notebooks and the CLI call the Lab; the Lab calls the pure
core (design, prompts, analysis), the client and the log.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import warnings
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlparse

from . import catalog
from .client import DashScopeClient, RetryPolicy
from .comparison import Comparison
from .credentials import find_api_key
from .design import VoiceDesign, detect_language
from .errors import (APIError, CosyVoiceLabError, LogError, OutcomeUnknown, Problem, TransportError,
                     ValidationError)
from .runner import RateLimiter, run_tasks

log = logging.getLogger("cosyvoice_lab.lab")

DEFAULT_PREVIEW = {
    "en": "Hello! This is a preview of a newly designed voice. How does it sound to you?",
    "zh": "大家好，这是新设计的声音的试听。你觉得听起来怎么样？",
}
RECONCILE_WINDOW_S = 120.0  # how far a listed voice's gmt_create may sit from our send time


def _prompt_text(prompt, language: str) -> tuple[str, dict | None]:
    """A voice prompt string and, for a PromptSpec, its JSON for the log."""
    if isinstance(prompt, str):
        return prompt, None
    if hasattr(prompt, "render") and hasattr(prompt, "to_dict"):
        return prompt.render(language), prompt.to_dict()
    raise TypeError(f"a prompt must be a str or a PromptSpec, got {type(prompt).__name__}")


class Lab:
    """A workbench: ``Lab(folder, backend="auto")``.

    Args:
        folder: where the experiment log and audio live (created if missing).
        backend: ``"auto"`` (the real service when an API key is found, else the offline
            simulator), ``"dashscope"`` (a key is required) or ``"offline"``.
        api_key: a key for the real service (else ``DASHSCOPE_API_KEY`` / credentials file).
        base_url: talk to another server speaking the protocol (e.g. a separately started
            ``cosyvoice-lab offline``); needs ``api_key``.
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
        from .log import ExperimentLog

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
        key = find_api_key(api_key) if backend != "offline" or base_url else None
        if base_url:  # a separately started simulator (or a proxy to the real service)
            offline = backend == "offline" or urlparse(base_url).hostname in ("127.0.0.1", "localhost", "::1")
            # the simulator's documented key only for a simulator; anything else needs a real one
            return DashScopeClient(api_key=key or (catalog.OFFLINE_API_KEY if offline else None), base_url=base_url,
                                   backend="offline" if offline else "dashscope", **common)
        if backend == "dashscope" or (backend == "auto" and key is not None):
            return DashScopeClient(api_key=key, backend="dashscope", **common)  # raises without a key
        from .offline import shared

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
            from .analysis import measure

            return measure(audio, text=design.preview_text, language=design.language_hint).to_dict()
        except Exception as exc:  # noqa: BLE001 - a measurement must never lose a take
            log.warning("could not measure preview: %s", exc)
            return None

    def reconcile(self, experiment: str | None = None) -> list:
        """Settle takes whose outcome is unknown or that were interrupted: adopt the voice each
        may have stored (found by listing its prefix and matching prompt, preview text, model
        and creation time), or mark it failed. Call only when none of this lab's requests are in
        flight. Returns the settled takes."""
        settled = []
        for t in self.log.takes(experiment=experiment):
            if t.status in ("unknown", "interrupted"):
                settled.append(self._reconcile(t.take_id))
        return settled

    def _reconcile(self, take_id: str):
        take = self.log.get(take_id)
        d = take.design
        try:
            listed = self.client.list_voices(prefix=d.prefix)
        except (APIError, TransportError) as exc:
            log.warning("take %s: cannot reconcile yet (%s); will retry on the next run", take_id, exc)
            return take
        sent_at = take.started_at
        with self._reconcile_lock:  # two takes of one design must not adopt the same voice
            known = set(self.log.voice_ids()["voice_id"])
            candidates = [v for v in listed if v.voice_id not in known and _same_design(v, d)
                          and (v.gmt_create is None
                               or abs((v.gmt_create - sent_at).total_seconds()) <= RECONCILE_WINDOW_S)]
            if candidates:
                v = min(candidates, key=lambda v: abs((v.gmt_create - sent_at).total_seconds()) if v.gmt_create else 0)
                log.info("take %s: adopted voice %s stored despite the failed answer", take_id, v.voice_id)
                return self.log.reconcile(take_id, voice_id=v.voice_id, voice_status=v.status)
        return self.log.fail(take_id, error_code="OutcomeUnknown",
                             error_message=f"{take.error_message or take.status} — no voice was stored "
                                           f"(checked by listing prefix {d.prefix!r})")

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
        takes = [self._reconcile(t.take_id) if t.status == "unknown" else t for t in takes]
        if any(t.ok for t in takes) and self._verified({design.prefix}):
            takes = [self.log.get(t.take_id) for t in takes]
        return takes[0] if n == 1 else takes

    def rerun(self, take):
        """Send a past take's exact design again; the new take records it as its parent."""
        take = self.log.get(getattr(take, "take_id", take))
        return self.run_design(take.design, experiment=take.experiment, prompt_spec=take.prompt_spec,
                               parent_take_id=take.take_id)

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

    # --- voices and quota -----------------------------------------------------------------
    def voices(self):
        """The account's voices joined with the log: which take made each, rating, chosen."""
        import pandas as pd

        voices = self.client.list_voices(page_size=catalog.LIST_PAGE_SIZE_MAX)
        self.log.set_voice_status({v.voice_id: v.status for v in voices if v.status})
        listed = pd.DataFrame([v.__dict__ for v in voices],
                              columns=["voice_id", "target_model", "status", "voice_prompt", "preview_text",
                                       "gmt_create", "gmt_modified"])
        takes = self.log.to_dataframe()
        takes = takes[takes["voice_id"].notna()][["voice_id", "take_id", "experiment", "rating", "chosen"]]
        takes = takes.drop_duplicates("voice_id", keep="last")
        df = listed.merge(takes, on="voice_id", how="left")
        df["known"] = df["take_id"].notna()
        df["chosen"] = df["chosen"].astype("boolean").fillna(False)
        return df

    def verify(self, prefixes=None) -> int:
        """Ask the service for the status of the voices in the log (listing ``prefixes``, or
        the whole account) and record it with their takes. Returns how many takes were updated.
        A voice that is not OK (DEPLOYING, UNDEPLOYED) then shows in ``log.df`` / ``voices()``."""
        listed = []
        for prefix in sorted(prefixes) if prefixes else [None]:
            listed += self.client.list_voices(prefix=prefix, page_size=catalog.LIST_PAGE_SIZE_MAX)
        return self.log.set_voice_status({v.voice_id: v.status for v in listed if v.status})

    def _verified(self, prefixes) -> bool:
        try:
            self.verify(prefixes)
            return True
        except CosyVoiceLabError as exc:  # the takes are safe in the log; statuses can wait
            log.warning("could not check the new voices' status: %s", exc)
            return False

    def quota(self) -> dict:
        """How many voices the account holds, of how many allowed (one list request)."""
        held = len(self.client.list_voices(page_size=catalog.LIST_PAGE_SIZE_MAX))
        return {"held": held, "limit": catalog.VOICE_QUOTA, "free": max(0, catalog.VOICE_QUOTA - held)}

    def cleanup(self, *, dry_run: bool = True, experiment: str | None = None, include_unknown: bool = False,
                keep_rated_at_least: int | None = None):
        """Delete voices that were not chosen. A dry run (the default) shows the plan only.

        Never deletes a chosen voice; voices the log does not know are kept unless
        ``include_unknown``. Returns a DataFrame: voice_id, action ('delete'/'keep'), reason, done.
        """
        df = self.voices()
        if experiment is not None:
            df = df[(df["experiment"] == experiment) | (~df["known"] & include_unknown)]
        plan = df[["voice_id", "take_id", "experiment", "rating", "chosen", "known"]].copy()
        plan["action"], plan["reason"] = zip(*[_cleanup_decision(r, include_unknown, keep_rated_at_least)
                                               for r in plan.itertuples()]) if len(plan) else ((), ())
        plan["done"] = False
        if not dry_run:
            for i, row in plan[plan["action"] == "delete"].iterrows():
                try:
                    self.client.delete_voice(row.voice_id)
                    plan.at[i, "done"] = True
                except CosyVoiceLabError as exc:
                    plan.at[i, "reason"] = f"delete failed: {exc}"
            deleted = plan.loc[plan["done"], "voice_id"].tolist()
            self.log.mark_deleted(deleted)
        return plan.reset_index(drop=True)

    # --- speaking -----------------------------------------------------------------------------
    @property
    def synthesizer(self):
        """The WebSocket ``Synthesizer`` for this lab's backend (made on first use).

        Synthesis has its own limit (3 tasks/second on the service); the lab keeps under it."""
        if self._synthesizer is None:
            from .synthesis import Synthesizer

            rate = min(self.limiter.rate or catalog.SYNTHESIS_RPS, catalog.SYNTHESIS_RPS)
            self._synthesizer = Synthesizer(client=self.client, throttle=RateLimiter(rate).acquire)
        return self._synthesizer

    def _voice_and_take(self, take_or_voice_id):
        """(voice_id, Take or None) for a Take, a take id or a voice id."""
        value = getattr(take_or_voice_id, "take_id", take_or_voice_id)
        try:
            take = self.log.get(value)
            if not take.voice_id:
                raise ValidationError([Problem("take", "has_voice", f"take {value} has no voice ({take.status})")])
            return take.voice_id, take
        except LogError:
            known = self.log.voice_ids()
            match = known[known["voice_id"] == value]
            return value, (self.log.get(match["take_id"].iloc[-1]) if len(match) else None)

    def speak(self, take_or_voice_id, text: str, *, model: str | None = None, **options):
        """Read ``text`` with a designed voice; the recording is logged as an utterance of its take.

        Options: ``format``, ``sample_rate``, ``volume``, ``rate``, ``pitch``, ``instruction``,
        ``language_hints``, ``seed`` (see ``speech.SpeechOptions``).

        Returns:
            a SpeechResult (plays inline; ``.characters`` billed and ``.cost_cny`` estimated).
        Raises:
            ValidationError: bad text/options or a model the voice is not bound to (nothing sent).
            SynthesisError, VoiceNotReady, VoiceNotFound: the service could not speak it.
        """
        voice_id, take = self._voice_and_take(take_or_voice_id)
        result = self.synthesizer.speak(voice_id, text, model=model, **options)
        if take is not None:
            self.log.add_utterance(take.take_id, text=text, params={"model": result.model, **result.options.to_dict()},
                                   characters=result.characters, cost_cny=result.cost_cny, audio=result.audio,
                                   request_id=result.request_id)
        return result

    def estimate(self, text: str, model: str | None = None) -> dict:
        """Billed characters and estimated cost of speaking ``text`` (CJK characters count 2)."""
        from .speech import estimate_cost

        model = model or self.model
        characters, cny = estimate_cost(text, model)
        return {"model": model, "characters": characters, "cost_cny": cny}

    def audition(self, takes, script: str, **options):
        """Read one ``script`` with several voices; returns an Audition (players side by side)."""
        from .audition import Audition

        results = []
        for t in takes:
            try:
                results.append(self.speak(t, script, **options))
            except CosyVoiceLabError as exc:
                results.append(exc)
        return Audition(script, list(takes), results)


def _same_design(voice, design: VoiceDesign) -> bool:
    return (voice.voice_prompt == design.voice_prompt and voice.preview_text == design.preview_text
            and (voice.target_model or catalog.model_of_voice(voice.voice_id)) == design.target_model)


def _cleanup_decision(row, include_unknown: bool, keep_rated_at_least: int | None) -> tuple[str, str]:
    if bool(row.chosen):
        return "keep", "chosen"
    if not row.known:
        return ("delete", "not in the log (include_unknown=True)") if include_unknown else ("keep", "not in the log")
    if keep_rated_at_least is not None and row.rating is not None and row.rating == row.rating \
            and int(row.rating) >= keep_rated_at_least:
        return "keep", f"rated {int(row.rating)}"
    return "delete", "not chosen"


def _experiment_name(cells) -> str:
    """A stable name for a compare of these prompts and models, so running it again resumes it."""
    digest = hashlib.sha1(json.dumps([c[2] for c in cells]).encode()).hexdigest()[:8]
    return f"compare-{digest}"
