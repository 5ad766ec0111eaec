"""Designer: one take — a design sent once, logged ``pending`` before the request leaves and
settled with its outcome after, the preview measured on the way in."""

from __future__ import annotations

import logging

from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import APIError, OutcomeUnknown, TransportError, ValidationError
from cosyvoice_lab.take import Take

log = logging.getLogger(__name__)


class Designer:
    """Sends single designs for a Lab.

    Args:
        client: the ``DashScopeClient`` (real service or simulator).
        experiment_log: the ``ExperimentLog`` every take is written to.
        backend, region: recorded with every take.
        measure: measure each preview (pitch, loudness, rate) and store it with the take.
    """

    def __init__(self, client, experiment_log, *, backend: str, region: str, measure: bool = True):
        self.client, self.experiment_log = client, experiment_log
        self.backend, self.region, self.measure = backend, region, measure

    def run(
        self,
        design: VoiceDesign,
        *,
        experiment: str | None = None,
        prompt_spec: dict | None = None,
        parent_take_id: str | None = None,
        cell: str | None = None,
        repeat: int | None = None,
    ) -> Take:
        """Send one design, logging it before and after. Returns the Take (ok or failed)."""
        take = self.experiment_log.start(
            design,
            experiment=experiment,
            backend=self.backend,
            region=self.region,
            host=self.client.host,
            prompt_spec=prompt_spec,
            parent_take_id=parent_take_id,
            cell=cell,
            repeat=repeat,
        )
        try:
            created = self.client.create_voice(design)
        except OutcomeUnknown as exc:
            # Reconciled once no request is in flight (see reconcile()): a voice another
            # in-flight request stored could otherwise be adopted twice.
            return self.experiment_log.fail(
                take.take_id, error_code="OutcomeUnknown", error_message=str(exc), status="unknown"
            )
        except APIError as exc:
            return self.experiment_log.fail(
                take.take_id, error_code=exc.code, error_message=exc.message, request_id=exc.request_id
            )
        except (TransportError, ValidationError) as exc:
            return self.experiment_log.fail(take.take_id, error_code=type(exc).__name__, error_message=str(exc))
        except Exception as exc:  # an answer we could not read (e.g. no voice_id): a voice may exist
            self.experiment_log.fail(
                take.take_id, error_code=type(exc).__name__, status="unknown", error_message=f"unexpected answer: {exc}"
            )
            raise
        except BaseException:  # Ctrl-C mid-request: the voice may exist; reconcile will tell
            self.experiment_log.fail(
                take.take_id,
                error_code="Interrupted",
                status="interrupted",
                error_message="interrupted while the request was in flight; a voice may have been created",
            )
            raise
        metrics = self.measure_preview(created.preview, design)
        return self.experiment_log.finish(
            take.take_id,
            voice_id=created.voice_id,
            request_id=created.request_id,
            audio=created.preview,
            latency_s=created.latency_s,
            metrics=metrics,
        )

    def measure_preview(self, audio, design: VoiceDesign) -> dict | None:
        """The preview's measurements as a dict, or None (switched off, or it failed: a take is never lost)."""
        if not self.measure:
            return None
        try:
            from cosyvoice_lab.analysis.measures import measure

            return measure(audio, text=design.preview_text, language=design.language_hint).to_dict()
        except Exception as exc:  # a measurement must never lose a take
            log.warning("could not measure preview: %s", exc)
            return None
