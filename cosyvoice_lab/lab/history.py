"""Lineage: the versions a prompt went through, read from the log. ``Lab.history`` delegates here.

A take records the take it varied in ``parent_take_id``: ``Lab.rerun`` sets it (the same design
sent again), and so does ``Lab.design(..., parent=take)`` (an edited prompt, or more
candidates). The history of a take is the tree those links make around it: its ancestors up to
the first version, and every take descending from that one, oldest first. Takes designed
without a link (the PromptBuilder records none) get a lineage derived instead, and say so: the
takes of the same experiment, or without one, those of the same prompt or of a PromptSpec one
word away.
"""

from __future__ import annotations

import json
from typing import Any

from cosyvoice_lab.views.history import COLUMNS, MEASURES, History

# what makes two takes the same design (a rerun) rather than an edit
_DESIGN_FIELDS = (("voice_prompt", "prompt edited"), ("preview_text", "preview text changed"), ("prefix", "prefix"))


def _spec(text: Any) -> dict | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        spec = json.loads(text)
    except ValueError:
        return None
    return spec if isinstance(spec, dict) else None


def change(before: dict, after: dict) -> str:
    """What differs between two versions (rows of the log's frame), in words: "pitch: low → high",
    "model: v3.5-plus → v3.5-flash", "prompt edited"; "" when they are the same design."""
    parts = []
    old, new = _spec(before.get("prompt_spec")), _spec(after.get("prompt_spec"))
    spec_said = False
    if old is not None and new is not None:
        for key in dict.fromkeys([*old, *new]):
            if old.get(key) != new.get(key):
                parts.append(f"{key}: {old.get(key) or '—'} → {new.get(key) or '—'}")
                spec_said = True
    for column, words in _DESIGN_FIELDS:
        if str(before.get(column)) != str(after.get(column)) and not (column == "voice_prompt" and spec_said):
            parts.append(words if column != "prefix" else f"prefix: {before.get(column)} → {after.get(column)}")
    if str(before.get("target_model")) != str(after.get("target_model")):
        parts.append(f"model: {before.get('target_model')} → {after.get('target_model')}")
    return "; ".join(parts)


def linked_versions(df, take_id: str) -> list[str]:
    """The take ids linked to ``take_id`` by parent links: the first ancestor in the log, and all
    its descendants (the take itself included), in the frame's order (oldest first)."""
    parent = dict(zip(df["take_id"], df["parent_take_id"], strict=True))
    root, seen = take_id, {take_id}
    while isinstance(parent.get(root), str) and parent[root] in parent and parent[root] not in seen:
        root = parent[root]
        seen.add(root)
    family, frontier = {root}, {root}
    children: dict[str, list[str]] = {}
    for child, p in parent.items():
        if isinstance(p, str):
            children.setdefault(p, []).append(child)
    while frontier:
        frontier = {c for t in frontier for c in children.get(t, ()) if c not in family}
        family |= frontier
    return [t for t in df["take_id"] if t in family]


def derived_versions(df, row: dict) -> tuple[list[str], str]:
    """Without links: the takes of the same experiment, or (no experiment) of the same prompt or a
    PromptSpec at most one field away; and the sentence that says how they were found."""
    experiment = row.get("experiment")
    if isinstance(experiment, str) and experiment:
        same = df["experiment"] == experiment
        return list(df.loc[same.fillna(False).astype(bool), "take_id"]), (
            f"no parent links recorded: the versions are the takes of experiment {experiment}, in time order"
        )
    spec = _spec(row.get("prompt_spec"))
    ids = []
    for other in df[df["experiment"].isna()].to_dict("records"):
        theirs = _spec(other.get("prompt_spec"))
        near = spec is not None and theirs is not None and sum(spec.get(k) != theirs.get(k) for k in spec) <= 1
        if other["voice_prompt"] == row["voice_prompt"] or near:
            ids.append(other["take_id"])
    return ids, "no parent links recorded: the versions are takes of the same prompt (or a PromptSpec one word away)"


def _ratings(experiment_log) -> dict[str, tuple[int, float]]:
    """take_id -> (ratings given in listening rounds, their mean), when the log keeps them."""
    frame = experiment_log.ratings.to_dataframe()
    if not len(frame):
        return {}
    grouped = frame.groupby("take_id")["rating"].agg(["count", "mean"])
    return {
        str(t): (int(n), float(m)) for t, n, m in zip(grouped.index, grouped["count"], grouped["mean"], strict=True)
    }


def history(experiment_log, take) -> History:
    """The versions of ``take`` (a Take or a take id, or a unique prefix of one).

    Raises:
        TakeNotFound: no take has that id. TypeError: ``take`` is neither a Take nor a str.
    """
    import pandas as pd

    take_id = getattr(take, "take_id", take)
    if not isinstance(take_id, str):
        raise TypeError(f"history needs a Take or a take id, got {type(take).__name__}")
    take_id = experiment_log.get(take_id).take_id  # a prefix becomes the id; unknown ones raise
    df = experiment_log.to_dataframe()
    rows = {r["take_id"]: r for r in df.to_dict("records")}
    ids = linked_versions(df, take_id)
    linked, note = True, ""
    if len(ids) == 1:
        ids, note = derived_versions(df, rows[take_id])
        linked = False
    ratings = _ratings(experiment_log)
    out = []
    for version, tid in enumerate(ids, start=1):
        row = rows[tid]
        parent = row.get("parent_take_id")
        parent = parent if isinstance(parent, str) else None
        # linked: against the take it varied; derived: against the version before
        before = (rows.get(parent) if parent else None) if linked else (rows[ids[version - 2]] if version > 1 else None)
        said = change(before, row) if before is not None else ""
        if linked:
            kind = "original" if before is None else ("edit" if said else "rerun")
        else:
            kind = "first" if before is None else ("variant" if said else "same prompt")
        n, mean = ratings.get(tid, (0, float("nan")))
        out.append(
            {
                **{c: row.get(c) for c in COLUMNS if c in row},
                "version": version,
                "parent_take_id": parent,
                "kind": kind,
                "change": said,
                "ratings_n": n,
                "ratings_mean": mean,
                **{m: row.get("m_" + m, float("nan")) for m in MEASURES},
            }
        )
    return History(pd.DataFrame(out, columns=list(COLUMNS)), take_id, linked, note)
