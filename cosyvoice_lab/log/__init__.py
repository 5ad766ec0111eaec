"""The experiment log: every take recorded, durable, a DataFrame away.

:class:`ExperimentLog` is a facade over its parts: the database (``db``), the audio store
(``audio_store``), row conversion (``rows``), DataFrames (``frame``), annotations, migrations,
recovery of stale pending takes, exports and bundles. :func:`copy_log` copies a whole log
between a folder and a team's database.
"""

from __future__ import annotations

from cosyvoice_lab.errors import LogError, TakeNotFound
from cosyvoice_lab.log.copy import copy_log
from cosyvoice_lab.log.experiment_log import DB_NAME, SCHEMA_VERSION, ExperimentLog

__all__ = ["DB_NAME", "SCHEMA_VERSION", "ExperimentLog", "LogError", "TakeNotFound", "copy_log"]
