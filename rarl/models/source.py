"""Where a model comes from: a local folder that must hold a model, or a hub id that needs a hub.

Why: transformers meets a folder that is not a model, or one with a cut-short ``config.json`` or
``tokenizer.json``, with a traceback from deep inside its loaders; and a hub id without a reachable hub
(no network, a firewall) is retried for minutes before it fails. :func:`model_source` answers both in
one line before anything loads: it checks a local folder's settings and weights files, and for a hub id
that is not cached it fails at once when ``HF_HUB_OFFLINE`` is set or a two-second connection to the hub
fails. A cached hub model without a hub is loaded from its cached snapshot folder instead of retried.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from rarl.errors import UserError
from rarl.io import json_file_problem, weights_file_problem

log = logging.getLogger(__name__)

# The files of a model folder besides its weights that change what it outputs (and that must parse): the
# architecture and its scaling, decoding defaults, image preprocessing, the tokenizer, the chat template.
MODEL_SETTINGS_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
)
HUB_PROBE_TIMEOUT_S = 2.0
_TRUE = {"1", "on", "yes", "true"}


def model_source(name: str) -> str:
    """What to pass to ``from_pretrained`` for ``name``: the local folder (checked), the hub id, or the
    cached snapshot folder of the hub id when no hub can be reached."""
    path = Path(name).expanduser()
    if path.is_dir():
        check_model_dir(path, name)
        return str(path)  # "~/models/x" expanded: from_pretrained would take it for a hub id
    if path.exists():
        raise UserError(f"cannot load model from '{name}': a file, not a model folder or a hub id")
    if not is_hub_id(name):
        raise UserError(f"cannot load model from '{name}': no such folder")
    return hub_source(name)


def check_model_dir(folder: Path, name: str | None = None) -> None:
    """A one-line error unless ``folder`` looks like a loadable model: a ``config.json`` with an
    image-text ``model_type``, settings files that parse, weights that are whole."""
    shown = name or str(folder)
    config = folder / "config.json"
    if not config.is_file():
        if (folder / "adapter_config.json").is_file():
            raise UserError(
                f"cannot load model from '{shown}': it is a LoRA adapter, not a model; pass it as --adapter "
                "(model.adapter_path) together with its base model"
            )
        raise UserError(f"cannot load model from '{shown}': not a model folder (no config.json)")
    for file_name in MODEL_SETTINGS_FILES:
        if file_name.endswith(".json") and (folder / file_name).is_file():
            problem = json_file_problem(folder / file_name)
            if problem is not None:
                raise UserError(f"cannot load model from '{shown}': {file_name} {problem}")
    model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise UserError(
            f"cannot load model from '{shown}': config.json has no model_type (not a transformers model)"
        )
    if not is_image_text_model(model_type):
        raise UserError(
            f"cannot load model from '{shown}': its model_type {model_type!r} is not an image-text model "
            "(rarl needs a vision-language model such as Qwen2-VL)"
        )
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.index.json"))
    for path in weights:
        problem = weights_file_problem(path)
        if problem is not None:
            raise UserError(f"cannot load model from '{shown}': {path.name} {problem}")


def is_image_text_model(model_type: str) -> bool:
    """Whether transformers loads ``model_type`` as an image-text-to-text model (what rarl trains and
    evaluates); True when this transformers does not publish the list."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    except ImportError:
        return True
    return model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is spelled like a hub repository id (``org/name`` or ``name``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_offline() -> bool:
    """Offline mode as huggingface_hub and transformers read it (the environment, read now)."""
    from huggingface_hub import constants

    env = (os.environ.get(var, "").strip().lower() for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(value in _TRUE for value in env)


def hub_source(repo_id: str) -> str:
    """The hub id when a hub is reachable; else its cached snapshot, or a one-line error at once."""
    from huggingface_hub import constants, try_to_load_from_cache

    offline = hub_offline()
    if not offline and hub_reachable(constants.ENDPOINT):
        return repo_id
    cached = try_to_load_from_cache(repo_id, "config.json")
    if isinstance(cached, str):
        snapshot = Path(cached).parent
        log.info("%s: no hub; loading the cached copy in %s", repo_id, snapshot)
        check_model_dir(snapshot, repo_id)
        return str(snapshot)
    why = "HF_HUB_OFFLINE is set" if offline else f"the hub ({constants.ENDPOINT}) cannot be reached"
    raise UserError(
        f"cannot load model from '{repo_id}': not a local folder, not in the Hugging Face cache, and {why}; "
        f"download it where there is network (huggingface-cli download {repo_id}) or pass a local folder"
    )


@functools.lru_cache(maxsize=8)
def hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the hub (or the configured HTTPS proxy) opens within two seconds.

    Asked once per process and endpoint: a model is resolved several times per run (processor, model,
    token budget).
    """
    import urllib.request

    target = urlparse(endpoint)
    if not target.hostname:
        return True  # nothing to probe: let the hub client decide
    proxy = None
    if not urllib.request.proxy_bypass(target.hostname):
        proxy = urllib.request.getproxies().get(target.scheme)
    url = urlparse(proxy) if proxy else target
    host = url.hostname or target.hostname
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


__all__ = [
    "MODEL_SETTINGS_FILES",
    "check_model_dir",
    "hub_offline",
    "hub_reachable",
    "hub_source",
    "is_hub_id",
    "is_image_text_model",
    "model_source",
]
