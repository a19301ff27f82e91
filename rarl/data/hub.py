"""Hugging Face hub datasets as sources: telling a hub id from a local path, and loading either layout.

Why: a config line such as ``{source: vqa_rad, path: flaviagiammarino/vqa-rad}`` should just work, with
the dataset's own column names (the hub ids a task knows: ``hub_ids`` in :mod:`rarl.tasks`), and a typo in
a *local* path must say "not found" at once instead of spending a minute retrying a hub that has no such
dataset. A local folder in the hub's layout (a dataset card with ``dataset_info``/``configs``, or
``data/*.parquet`` shards) goes through ``datasets.load_dataset`` exactly like the hub id would.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from rarl.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet", ".txt", ".pkl", ".csv", ".yaml", ".yml", ".zip")


def looks_local(path: str) -> bool:
    """True when ``path`` can only be meant as a local path (so a missing one is simply "not found").

    Hub ids are exactly ``owner/name``; anything starting with ``.``, ``/`` or ``~``, with more or fewer
    slashes, with a data-file suffix, or whose first component is an existing local folder is local.
    """
    if path.startswith((".", "/", "~")) or "\\" in path or not HUB_ID.match(path):
        return True
    if Path(path).suffix.lower() in LOCAL_SUFFIXES:
        return True
    return Path(path.split("/", 1)[0]).is_dir()


def is_hub_layout(folder: Path) -> bool:
    """A local folder laid out like a hub dataset repository (card with features, or parquet shards)."""
    if not folder.is_dir():
        return False
    card = folder / "README.md"
    if card.is_file():
        head = card.read_text(encoding="utf-8-sig", errors="replace")[:20000]  # -sig: drop a BOM
        if head.startswith("---") and ("dataset_info:" in head or "configs:" in head):
            return True
    data = folder / "data"
    return data.is_dir() and any(data.glob("*.parquet"))


def is_hub_dataset(path: str | None) -> bool:
    """True for a hub id (not an existing local path) or a local folder in the hub's layout."""
    if not path:
        return False
    local = Path(path).expanduser()
    if local.exists():
        return is_hub_layout(local)
    return not looks_local(path)


def hub_offline() -> bool:
    """True when the user told the HF libraries not to use the network."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in names)


def check_hub_id(repo_id: str) -> None:
    """Fail fast when ``repo_id`` is not a dataset on the hub (one request, no retries).

    Offline (``HF_HUB_OFFLINE``) nothing is asked; the local cache is tried by the caller.
    """
    if Path(repo_id).expanduser().exists() or hub_offline():
        return
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        HfApi().dataset_info(repo_id, timeout=10)
    except (RepositoryNotFoundError, HFValidationError):
        raise UserError(
            f"{repo_id}: not found (no such local path, and no such dataset on the Hugging Face hub)"
        ) from None
    except Exception as exc:  # network failures come in many types; one line is enough
        raise UserError(
            f"{repo_id}: not found (no such local path; the Hugging Face hub, where it could be a dataset "
            f"id, cannot be reached: {type(exc).__name__}; with a cached copy, set HF_HUB_OFFLINE=1)"
        ) from None


def load_split(path: str, split: str, split_names: tuple[str, ...]) -> Any:
    """``datasets.load_dataset(path, split=...)`` for the first spelling of ``split`` the dataset has."""
    import datasets

    check_hub_id(path)
    try:
        available = list(datasets.get_dataset_split_names(str(path)))
    except Exception as exc:  # hub/offline/format errors come in many types; report them in one line
        raise UserError(f"{path}: cannot load dataset ({type(exc).__name__}: {_first_line(exc)})") from None
    for name in split_names:
        if name in available:
            return datasets.load_dataset(str(path), split=name)
    raise UserError(f"{path}: no split '{split}'; the dataset has {', '.join(available)}")


def snapshot(repo_id: str) -> str:
    """A local folder with the files of a hub dataset repository (for sources that are not tables)."""
    check_hub_id(repo_id)
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, repo_type="dataset")
    except Exception as exc:
        raise UserError(f"{repo_id}: cannot download ({type(exc).__name__}: {_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


__all__ = ["check_hub_id", "is_hub_dataset", "is_hub_layout", "load_split", "looks_local", "snapshot"]
