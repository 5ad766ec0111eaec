"""Lab: the workbench a notebook holds — a backend, an experiment log and defaults.

It holds what it composes, as attributes that are part of its API: ``log`` (the ExperimentLog),
``client``, ``limiter``, ``account`` (a :class:`VoiceAccount`, ``account.py``: voices, quota,
reconcile, cleanup), ``speaker`` (a :class:`Speaker`, ``speaker.py``: speak, estimate, audition)
and ``measuring`` (the :class:`MeasuringStage`, ``stage.py``). Its own verbs are the notebook's:
designing (``design``, ``compare``, ``rerun``, planned by ``planning.py`` and sent through the one
runner, ``runner.py``), and those that need the lab's defaults or its stage (``sweep``,
``remeasure``, ``history``, ...). Widgets, notebooks and the CLI call the Lab; the Lab calls the
pure core, the client and the log, never a shell: the report (``views.report.report(lab, path)``)
and the listening panel (``panel.start(lab.log, experiment)``) take the lab's log themselves.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosyvoice_lab import catalog, folders, html
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.lab import history, measuring, planning, stage, sweep, tune
from cosyvoice_lab.lab.account import VoiceAccount
from cosyvoice_lab.lab.backend import connect
from cosyvoice_lab.lab.designer import Designer, all_or_raise
from cosyvoice_lab.lab.runner import OnDone, RunResult, run_tasks
from cosyvoice_lab.lab.speaker import Speaker
from cosyvoice_lab.lab.stage import MeasuringOptions, MeasuringStage
from cosyvoice_lab.service import ConcurrencyController, RateLimiter, RetryPolicy
from cosyvoice_lab.service.ratelimit import DEFAULT_LIMITS
from cosyvoice_lab.service.retry import DEFAULT_RETRY
from cosyvoice_lab.service.timeouts import DEFAULT_TIMEOUTS
from cosyvoice_lab.take import Take, Takes, check_experiment
from cosyvoice_lab.views.comparison import Comparison

if TYPE_CHECKING:
    from cosyvoice_lab.prompts.spec import PromptSpec
    from cosyvoice_lab.views.history import History
    from cosyvoice_lab.views.sweep import Sweep

log = logging.getLogger(__name__)


class Lab:
    """A workbench: ``Lab(folder, backend="auto")``.

    Args:
        folder: where the experiment log and audio live (created if missing); default
            ``folders.default_lab_folder()``, the folder the notebooks and the CLI share.
        log: a team's log, ``postgresql://...`` (the folder keeps this machine's files); default ``$COSYVOICE_LAB_LOG``.
        backend: ``"auto"`` (the real service when an API key is found, else the offline
            simulator), ``"dashscope"`` (a key is required) or ``"offline"``.
        api_key: a key for the real service (else ``DASHSCOPE_API_KEY`` / credentials file).
        base_url: talk to another server speaking the protocol (e.g. a separately started
            ``cosyvoice-lab offline``); default ``DASHSCOPE_HTTP_BASE_URL`` (as the dashscope SDK
            reads it), else the region's endpoint. The WebSocket URL follows it, or
            ``DASHSCOPE_WEBSOCKET_BASE_URL``.
        workspace: a Model Studio workspace id: requests go to its host
            (``https://{id}.cn-beijing.maas.aliyuncs.com/api/v1`` and the matching WebSocket URL)
            instead of ``dashscope.aliyuncs.com``; the real service only.
        region, target_model, prefix, preview_text, sample_rate, response_format: defaults for designs.
        concurrency: an upper bound on requests in flight; by default the runner sizes it to
            reach ``requests_per_second`` (Little's law, halved on 429; at most ``Limits.max_concurrency``).
        requests_per_second: requests/second for all voice actions (designs, listings, queries), shared
            with other processes on this machine using the key; the service allows 10, the default keeps
            a margin; None for no limit. Synthesis keeps under the smaller of it and 3.
        measure: measure every preview and store the figures with its take, on the measuring
            stage (``lab.measuring``, ``stage.py``): ``design`` returns its takes measured,
            ``compare`` once the designs are in; what reads measures waits for the ones it needs.
        measuring: the stage's :class:`~cosyvoice_lab.lab.stage.MeasuringOptions` (workers, quality model).
        progress: show progress bars.
        retry: the retry policy of every request; timeout: seconds to wait for a design.
        model_profiles: offline, for the simulator this lab starts: how its models differ
            (``offline.profiles``), e.g. ``{"*": {"design_latency": 2}}``.
    """

    def __init__(
        self,
        folder: str | Path | None = None,
        *,
        log: str | Path | None = None,
        backend: str = "auto",
        api_key=None,
        base_url: str | None = None,
        workspace: str | None = None,
        region: str = catalog.DEFAULT_REGION,
        target_model: str = catalog.DEFAULT_MODEL,
        prefix: str = catalog.DEFAULT_PREFIX,
        preview_text: str | None = None,
        sample_rate: int = catalog.DEFAULT_PREVIEW_SAMPLE_RATE,
        response_format: str = catalog.DEFAULT_PREVIEW_FORMAT,
        concurrency: int | None = None,
        requests_per_second: float | None = DEFAULT_LIMITS.requests_per_second,
        measure: bool = True,
        measuring: MeasuringOptions | None = None,
        progress: bool = True,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float = DEFAULT_TIMEOUTS.create,
        model_profiles=None,
    ):
        from cosyvoice_lab.log.experiment_log import ExperimentLog

        self.log = ExperimentLog(folders.log_location(folder, log), folder=folder)
        self.region, self.target_model, self.prefix = region, target_model, prefix
        self.preview_text, self.sample_rate, self.response_format = preview_text, sample_rate, response_format
        self.concurrency, self.progress = concurrency, progress
        self.requests_per_second = requests_per_second
        self.limiter = RateLimiter(requests_per_second)
        self.pacer = ConcurrencyController(requests_per_second, waited=self.limiter.waited)
        # the in-process simulator is None unless this lab started one
        self.client, self.simulator = connect(
            backend,
            api_key=api_key,
            base_url=base_url,
            workspace=workspace,
            region=region,
            retry=retry,
            timeout=timeout,
            throttle=self.limiter.acquire,
            simulator_folder=self.log.folder / "offline-voices",
            model_profiles=model_profiles,
        )
        self.last_run: RunResult[Take | None] | None = None  # the last compare's takes (None: a cell held elsewhere)
        self.limiter.share(self.client.api_key.reveal(), self.client.host)  # hashed, never stored
        self.client.session.hooks["response"].append(self.pacer.on_response)  # 429s halve the pace
        self.designer = Designer(self.client, self.log, backend=self.client.backend, region=region)
        self.measure = measure
        self.measuring = MeasuringStage(self.log, measuring, progress=progress)
        self.account = VoiceAccount(self.client, self.log)
        self.speaker = Speaker(
            self.client,
            self.log,
            requests_per_second=requests_per_second,
            in_process_simulator=self.simulator is not None,
        )

    @property
    def backend(self) -> str:
        return self.client.backend

    @property
    def offline(self) -> bool:
        return self.client.backend == "offline"

    def __repr__(self):
        where = (
            ("OFFLINE simulator on " + self.client.host + " (no real voices are made)")
            if self.offline
            else f"{self.client.backend} {self.region} ({self.client.host})"
        )
        return f"<Lab {where}; log {self.log.location}; model {self.target_model}>"

    def _repr_html_(self) -> str:
        return html.render(
            "lab.html.j2",
            offline=self.offline,
            region=self.region,
            host=self.client.host,
            folder=self.log.location,
            model=self.target_model,
        )

    # --- one take -------------------------------------------------------------------------
    def make_design(
        self,
        prompt,
        *,
        preview_text: str | None = None,
        target_model: str | None = None,
        prefix: str | None = None,
        language: str | None = None,
    ) -> tuple[VoiceDesign, dict | None]:
        """The VoiceDesign (unvalidated) for a prompt with this lab's defaults, plus the spec JSON."""
        return planning.make_design(
            prompt,
            preview_text=preview_text or self.preview_text,
            target_model=target_model or self.target_model,
            prefix=prefix or self.prefix,
            language=language,
            sample_rate=self.sample_rate,
            response_format=self.response_format,
            region=self.region,
        )

    def run_design(self, design: VoiceDesign, **context) -> Take:
        """Send one design, logging it before and after (see ``Designer.run``). Returns the Take,
        as recorded (its preview is not measured here: ``design`` and the runner queue it)."""
        return self.designer.run(design, **context)

    def measured(self, takes: list) -> list:
        """``takes`` once their pending measures are written (waiting, with progress), re-read from the log."""
        return self.measuring.measured(takes)

    def _to_measure(self, take):
        """Queue a recorded take's preview for the measuring stage (when this lab measures); returns it."""
        if self.measure and take is not None and take.ok:
            self.measuring.submit(take)
        return take

    def _to_measure_unmeasured(self, takes: list) -> None:
        """Queue the ok takes that have no measures at all (a run stopped before they were written)."""
        for take in takes:
            if take.ok and not (take.metrics or {}).get("measures_version"):
                self._to_measure(take)

    # --- many takes: all through the runner --------------------------------------------------
    def _run(
        self,
        tasks: Sequence[Callable[[], Take | None]],
        desc: str,
        *,
        progress: bool | None = None,
        on_done: OnDone | None = None,
        reused: int = 0,
    ) -> RunResult[Any]:
        return run_tasks(
            tasks,
            concurrency=self.concurrency,
            controller=self.pacer,
            desc=desc,
            reused=reused,
            progress=self.progress if progress is None else progress,
            is_failure=lambda t: t is not None and not t.ok,
            on_done=stage.feeding(self._to_measure, on_done),  # each take queued for measuring as it arrives
        )

    def run_designs(
        self,
        designs: Sequence[VoiceDesign],
        *,
        experiment: str | None = None,
        prompt_spec: dict | None = None,
        parent_take_id: str | None = None,
        progress: bool | None = None,
        on_done: OnDone | None = None,
    ) -> RunResult[Take]:
        """Send ``designs`` (as given: not validated) through the runner, ``concurrency`` at once,
        each as ``run_design`` does, each ok take queued for measuring as it arrives. Does not
        settle them (see ``settle``) nor wait for their measures (see ``measured``).

        Args:
            progress: show a progress bar (default: the lab's ``progress``).
            on_done: ``on_done(index, take, error)`` as each finishes, in the calling thread.
        Returns:
            the RunResult: the takes in the order of ``designs`` (a design whose sending raised
            has none; ``on_done`` saw its exception).
        """
        sent = {"experiment": experiment, "prompt_spec": prompt_spec, "parent_take_id": parent_take_id}
        tasks = [partial(self.run_design, d, **sent) for d in designs]
        return self._run(tasks, "designing", progress=progress, on_done=on_done)

    def design(
        self,
        prompt,
        *,
        preview_text: str | None = None,
        target_model: str | None = None,
        prefix: str | None = None,
        language: str | None = None,
        n: int = 1,
        experiment: str | None = None,
        parent=None,
    ):
        """Design a voice from a description (str or PromptSpec); ``n`` candidates.

        Returns:
            a Take (n=1) or a list of N Takes, each logged (failed ones carry the error).
        Raises:
            ValidationError: the design breaks a rule (nothing is sent). The error of a candidate
            whose sending raised, or KeyboardInterrupt: never fewer than N takes silently.
        """
        design, spec = self.make_design(
            prompt, preview_text=preview_text, target_model=target_model, prefix=prefix, language=language
        )
        design.validate()
        check_experiment(experiment)
        sent = {"experiment": experiment, "prompt_spec": spec, "parent_take_id": getattr(parent, "take_id", parent)}
        if n == 1:
            return self.settle(self.measured([self._to_measure(self.run_design(design, **sent))]))[0]
        errors: list[Exception] = []
        result = self.run_designs([design] * n, on_done=lambda _, t, e: None if e is None else errors.append(e), **sent)
        takes = self.settle(self.measured(result.results))
        return Takes(all_or_raise(takes, errors, interrupted=result.interrupted))

    def rerun(self, take) -> Take:
        """Send a past take's exact design again; the new take records it as its parent."""
        take = self.log.get(getattr(take, "take_id", take))
        sent = {"experiment": take.experiment, "prompt_spec": take.prompt_spec, "parent_take_id": take.take_id}
        return self.settle(self.measured([self._to_measure(self.run_design(take.design, **sent))]))[0]

    def compare(
        self,
        prompts: Sequence,
        *,
        target_models: Iterable[str] = catalog.COMPARE_MODELS,
        repeats: int = planning.DEFAULT_REPEATS,
        preview_text: str | None = None,
        experiment: str | None = None,
        new_repeats: bool = False,
        prefix: str | None = None,
        check_quota: bool = True,
        verify: bool = True,
    ) -> Comparison:
        """Every prompt on every model, ``repeats`` times, side by side.

        Re-running the same call (same experiment) only does the cells that are missing or failed
        (each cell is claimed in the log before it is sent: another process running the same compare
        on this folder skips the cells this one holds); ``new_repeats=True`` draws ``repeats`` more
        per prompt and model. Before sending, the account's voices are counted (one list request;
        ``check_quota=False`` skips it) and a warning says if the run would pass the 1000-voice
        limit. Afterwards one more listing records each new voice's status as the service reports it
        (``verify=False`` skips it).

        Raises:
            ValidationError: any cell is invalid (all problems listed; nothing is sent).
        """
        models = tuple(target_models)
        if repeats < 1 or not prompts or not models:
            raise ValueError("compare needs at least one prompt, one model and repeats >= 1")
        cells = planning.plan_cells(
            prompts, models, lambda p, m: self.make_design(p, preview_text=preview_text, target_model=m, prefix=prefix)
        )
        experiment = check_experiment(experiment) or planning.experiment_name(cells)
        self.reconcile(experiment)  # a request that may have stored a voice: adopt it rather than redo it
        earlier = self.log.takes(experiment=experiment)
        todo = planning.still_to_do(cells, repeats, earlier, new_repeats=new_repeats)
        if not new_repeats:
            planning.warn_if_voices_gone(earlier, todo, stacklevel=3)
        self._to_measure_unmeasured(earlier)  # recorded by a run stopped before its measures were written
        if check_quota:  # each design family has its own quota (contract §12)
            self.account.check_quota(Counter(j.design.family.name for j in todo))
        send = partial(self.designer.run_cell, experiment=experiment)  # claimed first: None if held elsewhere
        tasks = [partial(send, j.design, prompt_spec=j.spec, cell=j.cell, repeat=j.repeat) for j in todo]
        reused = 0 if new_repeats else len(cells) * repeats - len(todo)  # made by an earlier run
        result = self.last_run = self._run(tasks, f"compare {experiment}", reused=reused)
        self.reconcile(experiment)
        if verify and result.done:
            self.account.verified({j.design.prefix for j in todo})
        planning.warn_if_interrupted(result, stacklevel=3)
        prompts = planning.prompts_of(cells)
        return Comparison(
            self.log, experiment, prompts, models, interrupted=result.interrupted, measures=self.measuring
        )

    # --- the account (account.py) --------------------------------------------------------------
    def settle(self, takes: list) -> list:
        """Finish takes once their requests are done: reconcile those whose outcome is unknown,
        then record the status the service reports for the new voices. Returns them re-read."""
        with self.designer.flight.quiet():  # no request of this lab in flight
            return self.account.settle(takes)

    def reconcile(self, experiment: str | None = None) -> list:
        """Adopt the voice each take of unknown outcome may have stored, or mark it failed once the
        grace window has passed (see ``VoiceAccount.reconcile``). Returns the takes."""
        with self.designer.flight.quiet():  # no request of this lab in flight
            return self.account.reconcile(experiment)

    def verify(self, prefixes=None) -> int:
        """Record the service's status of the log's voices (see ``VoiceAccount.verify``)."""
        return self.account.verify(prefixes)

    def voices(self):
        """The account's voices joined with the log: which take made each, rating, chosen."""
        return self.account.voices()

    def quota(self, family: str | None = None) -> dict:
        """How many voices of ``family`` (default: the lab model's) the account holds, of how
        many allowed (one listing)."""
        return self.account.quota(family or catalog.family_name(self.target_model) or catalog.COSYVOICE_FAMILY)

    def cleanup(
        self,
        *,
        dry_run: bool = True,
        experiment: str | None = None,
        include_unknown: bool = False,
        keep_rated_at_least: int | None = None,
    ):
        """Delete voices that were not chosen; a dry run (the default) shows the plan only
        (see ``VoiceAccount.cleanup``)."""
        return self.account.cleanup(
            dry_run=dry_run,
            experiment=experiment,
            include_unknown=include_unknown,
            keep_rated_at_least=keep_rated_at_least,
            prefix=self.prefix,
        )

    # --- speaking (speaker.py) -----------------------------------------------------------------
    @property
    def synthesizer(self):
        """The WebSocket ``Synthesizer`` for this lab's backend (made on first use)."""
        return self.speaker.synthesizer

    def speak(self, take_or_voice_id, text: str, *, model: str | None = None, **options):
        """Read ``text`` with a designed voice, logged as an utterance of its take (see ``Speaker.speak``)."""
        return self.speaker.speak(take_or_voice_id, text, model=model, **options)

    def estimate(self, text: str, model: str | None = None) -> dict:
        """Billed characters and estimated cost of speaking ``text`` (CJK characters count 2)."""
        return self.speaker.estimate(text, model or self.target_model)

    def audition(self, takes, script: str, **options):
        """Read one ``script`` with several voices; returns an Audition (players side by side)."""
        return self.speaker.audition(takes, script, **options)

    # --- measures of logged takes (measuring.py) ------------------------------------------------
    def remeasure(self, takes=None, *, force: bool = False, predicted_quality: bool = True):
        """Measure logged takes again with today's measures (``measures_version`` older than
        ``analysis.measures.VERSION``, or all with ``force``) and store the figures with each take,
        once the stage's pending measures are written (nothing is measured twice).

        Args:
            takes: None (every ok take), Take objects, take ids, or a DataFrame with ``take_id``.
            force: measure takes already at the current version too.
            predicted_quality: also run the DNSMOS model (the costliest measure).

        Returns:
            A DataFrame: ``take_id``, ``old_version``, ``new_version``, ``action``, ``problems``.
        """
        self.measuring.wait()
        return measuring.remeasure(self.log, takes, force=force, predicted_quality=predicted_quality)

    def closest(self, reference, takes=None, *, sample_rate: int | None = None):
        """Rank takes by how much their voice sounds like ``reference`` ("which of my 30 candidates
        sounds most like this?"): cosine similarity of pretrained speaker embeddings.

        Args:
            reference: an Audio, a Take, a path to an audio file, or a float array with ``sample_rate``.
            takes: None (every ok take of this lab's log), Take objects, take ids, or a DataFrame.

        Returns:
            A DataFrame sorted closest first: ``take_id``, ``voice_id``, ``target_model``,
            ``voice_prompt``, ``similarity`` (1 = the same voice), ``rank``.

        Raises:
            ValueError: the reference holds no speech.
        """
        return measuring.closest(self.log, reference, takes, sample_rate=sample_rate)

    # --- one word swept (sweep.py); a take's lineage (history.py) -----------------------------------
    def sweep(
        self,
        spec: PromptSpec,
        dimension: str,
        values: Sequence | None = None,
        repeats: int = planning.DEFAULT_REPEATS,
        target_model: str | None = None,
        experiment: str | None = None,
        *,
        baseline: Any = None,
        preview_text: str | None = None,
        measures: Sequence[str] | None = None,
    ) -> Sweep:
        """Design a PromptSpec across one dimension's values and report which measures each value
        moves, against a baseline value, with 95 % intervals.

        Each value's prompt is designed ``repeats`` times on one model through ``compare`` (logged as
        an experiment, resumable: the same call again sends only what is missing), every preview is
        measured, and each value × measure is one question: the difference of means from the
        baseline by Welch's t (each value judged on its own spread). The dimension's own measure
        (pitch for pitch, speaking rate for pace, loudness for volume; else pitch, speaking rate,
        loudness and predicted quality) is primary: Holm among the primary questions, each interval
        at the level Holm gives it; every other measure is exploratory (``views.sweep``).

        Args:
            spec: the PromptSpec to vary (everything else held fixed).
            dimension: gender, age, pitch, pace, volume, timbre, emotion, articulation, accent,
                scenario (or free_text, with ``values``).
            values: the values to try (None: leave the dimension out). Default: the spec's own value
                (or unspecified), then every other value the dimension offers.
            repeats: designs per value (at least 2).
            target_model: the model to design on (default: the lab's).
            experiment: the experiment name (default: one derived from the prompts: stable, so a
                rerun resumes).
            baseline: the value the others are compared with (default: the spec's own value if
                swept, else the first).
            preview_text: the text the previews read (default: the lab's).
            measures: the measurement columns to report (default ``views.sweep.MEASURES``).
        Returns:
            a Sweep: ``.table`` (value × measure: estimate, interval, adjusted p, verdict),
            ``.levels``, ``.plot()``; shows itself as a table in a notebook.
        Raises:
            ValueError: an unknown dimension or value (the message lists the valid ones), or fewer
                than two values. TypeError: ``spec`` is not a PromptSpec. ValidationError: a
                rendered design breaks a rule (nothing is sent).
        """
        return sweep.run(
            self,
            spec,
            dimension,
            values,
            repeats,
            target_model,
            experiment,
            baseline=baseline,
            preview_text=preview_text,
            measures=measures,
        )

    def history(self, take) -> History:
        """The versions a prompt went through around ``take``: its original, reruns and edits
        (recorded by ``rerun`` and ``design(..., parent=take)``), with ratings and measures per version.

        Args:
            take: a Take or a take id (or a unique prefix).
        Returns:
            a History: ``.table`` (one row per version, oldest first; ``kind`` original / rerun /
            edit, ``change`` what changed), ``.plot()``; a table in a notebook. A take without
            parent links gets the versions of its experiment or prompt family, and says so.
        Raises:
            TakeNotFound: no such take.
        """
        return history.history(self.log, take)

    # --- the tuner (tune.py) -------------------------------------------------------------------------
    def tune(self, start, target=None, **options):
        """Search for the description whose designs measure as ``target`` asks ("-3 st" pitch,
        "-15 %" pace, an absolute 110 Hz, a profile such as "deeper"), or, with ``reference=`` a
        recording, the one that sounds most like it. Designs go through this lab's runner (logged,
        resumable, within the rate limit); each candidate is a take family (``lab.history``).

        Options and what comes back: :func:`cosyvoice_lab.lab.tune.tune` (``reference``, ``target_models``,
        ``budget`` = 48, ``repeats`` = 3, ``preview_text``, ``tolerance``, ``keep``, ...). Returns a
        ``Tuning``: ``.best`` (accepted by ``design`` and ``compare``), ``.table``, ``.reached``,
        ``.designs_used``, ``.plot()``.
        """
        return tune.tune(self, start, target, **options)
