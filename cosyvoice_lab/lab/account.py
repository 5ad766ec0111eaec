"""The account's voices, as the Lab sees them: :class:`VoiceAccount` reconciles takes whose
outcome is unknown, records the statuses the service reports, counts the quota, lists the
voices joined with the log, and cleans up.

It holds the client and the log it is given and nothing else; the Lab delegates to it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import APIError, CosyVoiceLabError, LogError, TransportError
from cosyvoice_lab.take import Take, now_utc

if TYPE_CHECKING:
    from cosyvoice_lab.service.http import DashScopeClient

log = logging.getLogger(__name__)
UNSETTLED = ("unknown", "interrupted")  # a voice may exist for these: reconcile decides


# A create answered with the service's own 500 or 503 (its JSON error, from the service itself):
# the request has ended, so a listing made after the answer settles it at once. A timeout, a
# dropped connection or a gateway's 504 may leave the service still designing: those wait out
# the grace window (a voice stored late is adopted, never designed twice). The contract is silent
# on late voices after a 5xx; if one ever appears, ``cleanup`` lists it as an orphan.
ANSWERED_CODES = ("InternalError", "ServiceUnavailable", "ModelUnavailable")

RECONCILE_WINDOW_S = 120.0  # how far a listed voice's gmt_create may sit from our send time to be adopted
# A take whose create outcome is unknown stays 'unknown' until a listing made this long after it
# was sent finds no voice (the service's designs take seconds; a voice can be stored after the
# client gave up).
LATE_VOICE_GRACE_S = 60.0


class VoiceAccount:
    """The voices of one API key, kept in step with an experiment log.

    Args:
        client: the DashScopeClient that lists and deletes voices.
        experiment_log: the ExperimentLog whose takes made (some of) the voices.
        reconcile_window_s: how far a listed voice's creation time may sit from a take's send
            time for the voice to be adopted by it.
    """

    def __init__(
        self,
        client: DashScopeClient,
        experiment_log: Any,
        *,
        reconcile_window_s: float = RECONCILE_WINDOW_S,
        grace_s: float = LATE_VOICE_GRACE_S,
    ):
        self.client, self.log, self.reconcile_window_s = client, experiment_log, reconcile_window_s
        self.grace_s = grace_s
        self._lock = threading.Lock()  # two takes of one design must not adopt the same voice

    # --- takes whose outcome is unknown ----------------------------------------------------
    def reconcile(self, experiment: str | None = None) -> list[Take]:
        """Settle takes whose outcome is unknown or that were interrupted: adopt the voice each
        may have stored (found by listing its prefix and matching prompt, preview text, model
        and creation time), or mark it failed once a listing made ``grace_s`` after it was sent
        finds none (until then it stays reconcilable: a design can outlive the client's
        timeout) — at once when the service itself answered with an error (``ANSWERED_CODES``).
        Call only when none of this lab's requests are in flight. Returns the takes."""
        return [self.reconcile_take(t.take_id) for t in self.log.takes(experiment=experiment) if t.status in UNSETTLED]

    def reconcile_take(self, take_id: str) -> Take:
        """Settle one take whose create outcome is unknown (see :meth:`reconcile`). If the
        account cannot be listed now, or the grace window has not passed, the take is returned
        unchanged for a later run. A take settled first (another process) is returned as stored."""
        take = self.log.get(take_id)
        if take.status not in UNSETTLED:
            return take
        d = take.design
        listed_at = now_utc()
        try:
            listed = self.client.list_voices(
                prefix=d.prefix, page_size=catalog.LIST_PAGE_SIZE_MAX, family=d.family.name
            )
        except (APIError, TransportError) as exc:
            log.warning("take %s: cannot reconcile yet (%s); will retry on the next run", take_id, exc)
            return take
        with self._lock:
            known = set(self.log.voice_ids()["voice_id"])
            candidates = [
                v
                for v in listed
                if v.voice_id not in known
                and _same_design(v, d)
                and (v.gmt_create is None or self._seconds_from(v, take) <= self.reconcile_window_s)
            ]
            for v in sorted(candidates, key=lambda v: self._seconds_from(v, take) if v.gmt_create else 0):
                try:
                    adopted = self.log.table.reconcile(take_id, voice_id=v.voice_id, voice_status=v.status)
                except LogError:  # another process adopted this voice for another take meanwhile
                    continue
                log.info("take %s: adopted voice %s stored despite the failed answer", take_id, v.voice_id)
                return adopted
        waits = take.status != "unknown" or take.error_code not in ANSWERED_CODES
        if waits and take.started_at is not None and (listed_at - take.started_at).total_seconds() < self.grace_s:
            log.info(
                "take %s: no voice yet; it stays %s until %g s after it was sent", take_id, take.status, self.grace_s
            )
            return self.log.get(take_id)
        return self.log.table.fail(
            take_id,
            error_code="OutcomeUnknown",
            error_message=f"{take.error_message or take.status} — no voice was stored "
            f"(checked by listing prefix {d.prefix!r})",
        )

    @staticmethod
    def _seconds_from(voice, take: Take) -> float:
        return abs((voice.gmt_create - take.started_at).total_seconds())

    def settle(self, takes: list[Take]) -> list[Take]:
        """Finish takes once their requests are done: reconcile those whose outcome is unknown,
        then record the status the service reports for the new voices. Returns them re-read."""
        takes = [self.reconcile_take(t.take_id) if t.status == "unknown" else t for t in takes]
        if any(t.ok for t in takes) and self.verified({t.design.prefix for t in takes if t.ok}):
            takes = [self.log.get(t.take_id) for t in takes]
        return takes

    # --- statuses, voices and quota ----------------------------------------------------------
    def verify(self, prefixes: Iterable[str] | None = None) -> int:
        """Ask the service for the status of the voices in the log (listing ``prefixes``, or
        the whole account) and record it with their takes. Returns how many takes were updated.
        A voice that is not OK (DEPLOYING, UNDEPLOYED) then shows in ``log.df`` / ``voices()``."""
        # only CosyVoice voices report a status: the Qwen family's list and query carry none (§12)
        return self.list_and_record(prefixes, family=catalog.COSYVOICE_FAMILY)[1]

    def verified(self, prefixes: Iterable[str] | None) -> bool:
        """:meth:`verify`, reporting a failure as a warning in the log: True when it worked."""
        try:
            self.verify(prefixes)
            return True
        except CosyVoiceLabError as exc:  # the takes are safe in the log; statuses can wait
            log.warning("could not check the new voices' status: %s", exc)
            return False

    def list_and_record(self, prefixes: Iterable[str] | None = None, family: str | None = None) -> tuple[list, int]:
        """List the voices (of ``prefixes``, else all; of ``family``, else of every design family)
        and record each one's status in the log: every listing keeps the log's ``voice_status``
        current. Returns (voices, takes updated)."""
        listed = []
        for prefix in sorted(prefixes) if prefixes else [None]:
            listed += self.client.list_voices(prefix=prefix, page_size=catalog.LIST_PAGE_SIZE_MAX, family=family)
        return listed, self.log.table.set_voice_status({v.voice_id: v.status for v in listed if v.status})

    def _list_every_family(self) -> list:
        """The voices of every design family the client lists. A family other than CosyVoice
        that the key cannot list (the service refused: e.g. the Qwen family not activated) is
        left out with a warning, so CosyVoice's voices still show and can be cleaned up."""
        listed = []
        for name in self.client.families():
            try:
                listed += self.list_and_record(family=name)[0]
            except APIError as exc:
                if name == catalog.COSYVOICE_FAMILY:
                    raise
                warnings.warn(
                    f"could not list the {catalog.FAMILIES[name].label} voices ({exc}); they are left out",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return listed

    def voices(self):
        """The account's voices of every design family joined with the log: which take made
        each, rating, chosen."""
        import pandas as pd

        voices = self._list_every_family()
        listed = pd.DataFrame(
            [v.__dict__ for v in voices],
            columns=[
                "voice_id",
                "design_family",
                "target_model",
                "status",
                "voice_prompt",
                "preview_text",
                "gmt_create",
                "gmt_modified",
            ],
        )
        takes = self.log.to_dataframe()
        takes = takes[takes["voice_id"].notna()][["voice_id", "take_id", "experiment", "rating", "chosen"]]
        takes = takes.drop_duplicates("voice_id", keep="last")
        df = listed.merge(takes, on="voice_id", how="left")
        df["known"] = df["take_id"].notna()
        df["chosen"] = df["chosen"].astype("boolean").fillna(False)
        return df

    def quota(self, family: str = catalog.COSYVOICE_FAMILY) -> dict:
        """How many voices of ``family`` the account holds, of how many allowed (each design
        family has its own quota, contract §12; one listing of that family)."""
        held = len(self.list_and_record(family=family)[0])
        # CosyVoice's is VOICE_QUOTA, read when called (a test lowers it)
        limit = catalog.VOICE_QUOTA if family == catalog.COSYVOICE_FAMILY else catalog.FAMILIES[family].quota
        return {"held": held, "limit": limit, "free": max(0, limit - held)}

    def check_quota(self, adding: int | Mapping[str, int], family: str = catalog.COSYVOICE_FAMILY) -> int | None:
        """Warn (RuntimeWarning, pointing at the caller's caller) if ``adding`` more voices
        (of ``family``, or a mapping family -> count) would pass a family's limit. Returns the
        voices held (of the families counted), or None if not counted."""
        counts = dict(adding) if isinstance(adding, Mapping) else {family: adding}
        total = 0
        for name, n in counts.items():
            if not n:
                continue
            try:
                quota = self.quota(name)
            except CosyVoiceLabError as exc:
                log.warning("could not count the account's voices: %s", exc)
                return None
            total += quota["held"]
            if quota["held"] + n > quota["limit"]:
                label = catalog.FAMILIES[name].label
                warnings.warn(
                    f"the account holds {quota['held']} {label} voices; {n} more would pass the limit of "
                    f"{quota['limit']} — run lab.cleanup() first",
                    RuntimeWarning,
                    stacklevel=3,
                )
        return total if any(counts.values()) else None

    # --- cleanup -----------------------------------------------------------------------------
    def cleanup(
        self,
        *,
        dry_run: bool = True,
        experiment: str | None = None,
        include_unknown: bool = False,
        keep_rated_at_least: int | None = None,
        prefix: str | None = None,
    ):
        """Delete voices that were not chosen. A dry run (the default) shows the plan only.

        Never deletes a chosen voice; voices the log does not know are kept unless
        ``include_unknown``; those of ``prefix`` (the lab's) are named orphans ("orphan: not in
        the log": e.g. stored after the client gave up and never adopted).
        Returns a DataFrame: voice_id, action ('delete'/'keep'), reason, done.
        """
        df = self.voices()
        if experiment is not None:
            df = df[(df["experiment"] == experiment) | (~df["known"] & include_unknown)]
        plan = df[["voice_id", "take_id", "experiment", "rating", "chosen", "known"]].copy()
        plan["action"], plan["reason"] = (
            zip(
                *[cleanup_decision(r, include_unknown, keep_rated_at_least, prefix) for r in plan.itertuples()],
                strict=True,
            )
            if len(plan)
            else ((), ())
        )
        plan["done"] = False
        if not dry_run:
            self._delete(plan)
        return plan.reset_index(drop=True)

    def _delete(self, plan) -> None:
        """Delete the plan's 'delete' rows, marking each done (or why not); the log learns of each."""
        for i, row in plan[plan["action"] == "delete"].iterrows():
            try:
                self.client.delete_voice(row.voice_id)
                plan.at[i, "done"] = True
            except CosyVoiceLabError as exc:
                plan.at[i, "reason"] = f"delete failed: {exc}"
        self.log.table.mark_deleted(plan.loc[plan["done"], "voice_id"].tolist())


def _same_design(voice, design: VoiceDesign) -> bool:
    return (
        voice.voice_prompt == design.voice_prompt
        and voice.preview_text == design.preview_text
        and (voice.target_model or catalog.model_of_voice(voice.voice_id)) == design.target_model
    )


def cleanup_decision(
    row, include_unknown: bool, keep_rated_at_least: int | None, prefix: str | None = None
) -> tuple[str, str]:
    """('keep' or 'delete', why) for one voice of the cleanup plan (a row with voice_id, chosen,
    known, rating); a voice of ``prefix`` the log does not know is an orphan."""
    import pandas as pd  # a rating is pd.NA when unrated: NA is neither None nor comparable

    if bool(row.chosen):
        return "keep", "chosen"
    if not row.known:
        mine = prefix and catalog.prefix_of_voice(row.voice_id or "") == prefix
        why = "orphan: not in the log" if mine else "not in the log"
        return ("delete", f"{why} (include_unknown=True)") if include_unknown else ("keep", why)
    if keep_rated_at_least is not None and not pd.isna(row.rating) and int(row.rating) >= keep_rated_at_least:
        return "keep", f"rated {int(row.rating)}"
    return "delete", "not chosen"
