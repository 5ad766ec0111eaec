"""The account's voices, as the Lab sees them: reconcile uncertain takes, check statuses,
count the quota, list joined with the log, clean up.

A mixin of :class:`cosyvoice_lab.lab.lab.Lab` (it uses ``self.client`` and ``self.log``).
"""
from __future__ import annotations

import logging

from cosyvoice_lab import catalog
from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import APIError, CosyVoiceLabError, TransportError

log = logging.getLogger("cosyvoice_lab.lab.lab")
RECONCILE_WINDOW_S = 120.0  # how far a listed voice's gmt_create may sit from our send time


class AccountVerbs:
    """``reconcile``, ``verify``, ``voices``, ``quota`` and ``cleanup`` of the Lab."""

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

    # --- voices and quota -----------------------------------------------------------------
    def voices(self):
        """The account's voices joined with the log: which take made each, rating, chosen."""
        import pandas as pd

        voices, _ = self._list_and_record()
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
        return self._list_and_record(prefixes)[1]

    def _list_and_record(self, prefixes=None) -> tuple[list, int]:
        """List the voices (of ``prefixes``, else all) and record each one's status in the log:
        every listing keeps the log's ``voice_status`` current. Returns (voices, takes updated)."""
        listed = []
        for prefix in sorted(prefixes) if prefixes else [None]:
            listed += self.client.list_voices(prefix=prefix, page_size=catalog.LIST_PAGE_SIZE_MAX)
        return listed, self.log.set_voice_status({v.voice_id: v.status for v in listed if v.status})

    def _verified(self, prefixes) -> bool:
        try:
            self.verify(prefixes)
            return True
        except CosyVoiceLabError as exc:  # the takes are safe in the log; statuses can wait
            log.warning("could not check the new voices' status: %s", exc)
            return False

    def quota(self) -> dict:
        """How many voices the account holds, of how many allowed (one list request)."""
        held = len(self._list_and_record()[0])
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


def _same_design(voice, design: VoiceDesign) -> bool:
    return (voice.voice_prompt == design.voice_prompt and voice.preview_text == design.preview_text
            and (voice.target_model or catalog.model_of_voice(voice.voice_id)) == design.target_model)


def _cleanup_decision(row, include_unknown: bool, keep_rated_at_least: int | None) -> tuple[str, str]:
    import pandas as pd  # a rating is pd.NA when unrated: NA is neither None nor comparable

    if bool(row.chosen):
        return "keep", "chosen"
    if not row.known:
        return ("delete", "not in the log (include_unknown=True)") if include_unknown else ("keep", "not in the log")
    if keep_rated_at_least is not None and not pd.isna(row.rating) and int(row.rating) >= keep_rated_at_least:
        return "keep", f"rated {int(row.rating)}"
    return "delete", "not chosen"
