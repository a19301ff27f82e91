"""``rarl export --push-to-hub REPO``: upload the exported directory with ``huggingface_hub``'s ``HfApi``.

The calls are the library's documented public ones (``create_repo`` with ``exist_ok``, ``upload_folder``);
any failure of theirs is one line naming the repository. Tested against a scripted hub on 127.0.0.1
(``HF_ENDPOINT``), never against huggingface.co (no network where rarl was built).
"""

from __future__ import annotations

from pathlib import Path

from rarl.errors import UserError


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False) -> str:
    """Create ``repo_id`` (a model repository; kept if it exists) and upload ``folder``; returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="model",
            commit_message="rarl export: merged model, processor and model card",
        )
    except Exception as exc:  # network, auth, offline mode, a bad name: one line, the export stays on disk
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"--push-to-hub {repo_id}: upload failed ({type(exc).__name__}: {first}); the exported model "
            f"is complete in {folder}"
        ) from None
    return str(url)


__all__ = ["push_folder"]
