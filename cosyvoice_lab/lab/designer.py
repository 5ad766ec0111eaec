"""Designer: one take — a design sent once, logged ``pending`` before the request leaves and
settled with its outcome after. Measuring the preview is not its job: the Lab queues each
recorded take for the measuring stage (``stage.py``), so a design thread only ever waits on the
service."""

from __future__ import annotations

import logging

from cosyvoice_lab.design import VoiceDesign
from cosyvoice_lab.errors import APIError, OutcomeUnknown, TransportError, ValidationError
from cosyvoice_lab.lab.flight import InFlight
from cosyvoice_lab.take import Take

log = logging.getLogger(__name__)
NOT_SENT = "NotSent"  # the error code of a claimed take settled without being sent (``Designer.unsent``)


class Designer:
    """Sends single designs for a Lab.

    Args:
        client: the ``DashScopeClient`` (real service or simulator).
        experiment_log: the ``ExperimentLog`` every take is written to.
        backend, region: recorded with every take.
    """

    def __init__(self, client, experiment_log, *, backend: str, region: str):
        self.client, self.experiment_log = client, experiment_log
        self.backend, self.region = backend, region
        self.flight = InFlight()  # the lab's requests in flight: a reconcile waits for none (flight.py)

    def run(self, design: VoiceDesign, **where) -> Take:
        """Send one design, logging it before and after. Returns the Take (ok or failed).

        ``where``: experiment, prompt_spec, parent_take_id, cell, repeat (see ``TakeTable.start``).
        """
        with self.flight.request():
            return self._send(self.experiment_log.table.start(design, **self._context(where)), design)

    def run_cell(self, design: VoiceDesign, *, experiment: str, cell: str, **where) -> Take | None:
        """``run`` for a compare's cell, claimed in the log first: None, and nothing sent, when
        another take holds it (another process's, in flight or done)."""
        with self.flight.request():
            take = self.claim_cell(design, experiment=experiment, cell=cell, **where)
            return None if take is None else self._send(take, design)

    def claim_cell(self, design: VoiceDesign, *, experiment: str, cell: str, **where) -> Take | None:
        """The first half of ``run_cell``: the cell claimed in the log by a pending take (None when
        another take holds it), nothing sent. Send it with ``send_claimed``, or settle it as not
        sent (``unsent``): a pending take left alone counts as abandoned, and holds its cell until
        a reconcile finds no voice for it."""
        take = self.experiment_log.table.claim(design, **self._context(where), experiment=experiment, cell=cell)
        if take is None:
            log.info("cell %s of %s is held by another take; not sent", cell, experiment)
        return take

    def send_claimed(self, take: Take, design: VoiceDesign) -> Take:
        """The second half of ``run_cell``: send the design of a take ``claim_cell`` returned."""
        with self.flight.request():
            return self._send(take, design)

    def unsent(self, take: Take) -> Take:
        """Settle a claimed take that was never sent as failed (no voice can exist): its cell is free again."""
        return self.experiment_log.table.fail(
            take.take_id, error_code=NOT_SENT, error_message="claimed, then stopped before it was sent"
        )

    def _context(self, where: dict) -> dict:
        return {**where, "backend": self.backend, "region": self.region, "host": self.client.host}

    def _send(self, take: Take, design: VoiceDesign) -> Take:
        """Send the design of the pending ``take`` and record its outcome."""
        try:
            created = self.client.create_voice(design)
        except OutcomeUnknown as exc:
            # Reconciled once no request is in flight (see reconcile()): a voice another
            # in-flight request stored could otherwise be adopted twice. A service's own error
            # answer keeps its code (reconcile may settle it at once); no answer is OutcomeUnknown.
            answered = exc.cause.code if isinstance(exc.cause, APIError) and exc.cause.code else None
            return self.experiment_log.table.fail(
                take.take_id,
                error_code=answered or "OutcomeUnknown",
                error_message=str(exc),
                status="unknown",
                request_id=getattr(exc.cause, "request_id", None),
            )
        except APIError as exc:
            return self.experiment_log.table.fail(
                take.take_id, error_code=exc.code, error_message=exc.message, request_id=exc.request_id
            )
        except (TransportError, ValidationError) as exc:
            return self.experiment_log.table.fail(take.take_id, error_code=type(exc).__name__, error_message=str(exc))
        except Exception as exc:  # an answer we could not read (e.g. no voice_id): a voice may exist
            self.experiment_log.table.fail(
                take.take_id, error_code=type(exc).__name__, status="unknown", error_message=f"unexpected answer: {exc}"
            )
            raise
        except BaseException:  # Ctrl-C mid-request: the voice may exist; reconcile will tell
            self.experiment_log.table.fail(
                take.take_id,
                error_code="Interrupted",
                status="interrupted",
                error_message="interrupted while the request was in flight; a voice may have been created",
            )
            raise
        return self.experiment_log.table.finish(
            take.take_id,
            voice_id=created.voice_id,
            request_id=created.request_id,
            audio=created.preview,
            latency_s=created.latency_s,
        )


def all_or_raise(takes: list[Take], errors: list[Exception], *, interrupted: bool) -> list[Take]:
    """The takes of ``design(n=N)``, all N of them, or the reason there are fewer: the first
    error a candidate's sending raised (the others are in the log, named in the log message)."""
    if errors or interrupted:
        log.error("%d candidate(s) recorded before the run stopped: %s", len(takes), [t.take_id for t in takes])
        if errors:
            raise errors[0]
        raise KeyboardInterrupt(f"interrupted: {len(takes)} candidate(s) recorded in the log")
    return takes
