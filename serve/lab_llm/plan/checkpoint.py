"""A checkpoint's own description: ``config.json``, its quantization config and its safetensors index, read from
a local directory or file, or from the Hugging Face Hub by model id (``ORG/NAME``) through ``huggingface_hub``.

The Hub is read the way vLLM reads it (``hf_hub_download`` into the shared cache), so the planner honours the
same settings: ``HF_HOME`` / ``HF_HUB_CACHE`` (where the cache lives), ``HF_TOKEN`` (gated and private repos),
``HF_HUB_OFFLINE=1`` (cache only), ``HF_ENDPOINT`` (a mirror), and a ``revision`` (branch, tag or commit).
Only the small JSON files are fetched, never weights.

Files read, as vLLM reads them (vllm/transformers_utils/config.py and model_executor/model_loader/weight_utils.py):
- ``config.json`` (required);
- the quantization config: ``quantization_config`` inside config.json, else ``quantize_config.json`` (AutoGPTQ)
  or ``quant_config.json`` (AutoAWQ) beside it;
- ``model.safetensors.index.json``: ``metadata.total_size`` is the bytes of every stored tensor, a direct check
  of the planner's weight arithmetic (single-file checkpoints have no index; nothing is checked then).

Errors are ``PlanInputError`` with one line that says what to do: offline with nothing cached, a gated or private
repo without a token (or without access), an unknown repo or revision, the Hub out of reach.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab_llm.plan.errors import PlanInputError

CONFIG_FILE = "config.json"
QUANT_CONFIG_FILES = ("quantize_config.json", "quant_config.json")
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"

# huggingface_hub's rule for a repo id (utils/_validators.py validate_repo_id): namespace/name of [A-Za-z0-9._-],
# no "--" or "..". Only the two-part form is taken as a Hub id, so a bare word stays a (missing) local path.
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


@dataclass(frozen=True)
class Checkpoint:
    """What the planner reads of a checkpoint."""

    name: str
    """The model id or the local path, as vLLM would be given it."""
    config: dict[str, Any]
    """config.json, with ``quantization_config`` filled from a separate quantization file when it had none."""
    safetensors_total_bytes: int | None
    """``metadata.total_size`` of the safetensors index, when the checkpoint has one."""
    revision: str | None = None
    """The revision asked for (Hub only)."""
    commit: str | None = None
    """The commit the Hub files came from (from the cache's snapshot directory)."""
    source: str = ""
    """Where the files were read, for messages: a path, or ``hub:ORG/NAME@commit``."""
    caveats: tuple[str, ...] = ()
    """What could not be read and may make the plan wrong (for the plan's notes)."""


def is_hub_id(text: str) -> bool:
    """``ORG/NAME`` that is not an existing local path."""
    return bool(_REPO_ID.match(text)) and ".." not in text and "--" not in text and not Path(text).exists()


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PlanInputError(f"{what} {str(path)!r} is not readable JSON: {error}") from error


def _with_quantization(config: Mapping[str, Any], quant: Mapping[str, Any] | None, method_hint: str) -> dict[str, Any]:
    merged = dict(config)
    if quant and not isinstance(merged.get("quantization_config"), Mapping):
        quant = dict(quant)
        # AutoGPTQ's quantize_config.json names no method; AutoAWQ's quant_config.json does (or says "version").
        quant.setdefault("quant_method", method_hint)
        merged["quantization_config"] = quant
    return merged


def _total_size(index: Any, where: str) -> int | None:
    size = index.get("metadata", {}).get("total_size") if isinstance(index, Mapping) else None
    if size is None:
        return None
    try:
        return int(size)
    except (TypeError, ValueError):
        raise PlanInputError(f"{where}: metadata.total_size {size!r} is not a number of bytes") from None


def read_local(path: Path) -> Checkpoint:
    """A config.json, or a directory holding one (and perhaps the quantization config and safetensors index)."""
    config_path = path / CONFIG_FILE if path.is_dir() else path
    if not config_path.is_file():
        raise PlanInputError(f"model config {str(config_path)!r} does not exist")
    config = _read_json(config_path, "model config")
    if not isinstance(config, Mapping):
        raise PlanInputError(f"model config {str(config_path)!r} is not a JSON object")
    directory = config_path.parent
    quant, hint = None, ""
    for name, method in zip(QUANT_CONFIG_FILES, ("gptq", "awq"), strict=True):
        if (directory / name).is_file() and config_path.name == CONFIG_FILE:
            quant, hint = _read_json(directory / name, "quantization config"), method
            break
    index_path = directory / SAFETENSORS_INDEX_FILE
    total = None
    if config_path.name == CONFIG_FILE and index_path.is_file():
        total = _total_size(_read_json(index_path, "safetensors index"), str(index_path))
    name = str(config.get("_name_or_path") or (path if path.is_dir() else path.parent))
    return Checkpoint(
        name=name,
        config=_with_quantization(config, quant, hint),
        safetensors_total_bytes=total,
        source=str(config_path),
    )


def _hub_error(repo_id: str, revision: str | None, error: Exception) -> PlanInputError:
    """One line that says what happened and what to do, for the huggingface_hub error at hand."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"{repo_id}@{revision}" if revision else repo_id
    page = f"{constants.ENDPOINT}/{repo_id}"
    if isinstance(error, GatedRepoError):
        status = error.response.status_code if error.response is not None else 0
        if status == 403:
            return PlanInputError(
                f"model {at} is gated and the token in HF_TOKEN has no access: accept its conditions on {page} "
                "with that account, then retry"
            )
        return PlanInputError(
            f"model {at} is gated: accept its conditions on {page}, then set HF_TOKEN to a read token of that "
            "account (or run `hf auth login`)"
        )
    if isinstance(error, RepositoryNotFoundError):
        return PlanInputError(
            f"model {at} is neither a local path nor a model on the Hub ({constants.ENDPOINT}) - or it is private: "
            "check the id, or set HF_TOKEN to a token that can read it"
        )
    if isinstance(error, RevisionNotFoundError):
        return PlanInputError(f"model {repo_id} has no revision {revision!r} on the Hub: give a branch, tag or commit")
    cause = error.__cause__ if isinstance(error, LocalEntryNotFoundError) else error
    if constants.is_offline_mode() or isinstance(cause, OfflineModeIsEnabled):
        return PlanInputError(
            f"model {at} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE is set: "
            f"run `hf download {repo_id} --include '*.json'{f' --revision {revision}' if revision else ''}` once "
            "where the Hub is reachable (same HF_HOME), or unset HF_HUB_OFFLINE"
        )
    if isinstance(error, HfHubHTTPError) and error.response is not None and error.response.status_code == 401:
        return PlanInputError(
            f"model {at}: the Hub ({constants.ENDPOINT}) refused the token in HF_TOKEN (HTTP 401, invalid "
            "credentials): set a valid read token, or unset HF_TOKEN for a public model"
        )
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return PlanInputError(
            f"model {at}: the Hub ({constants.ENDPOINT}) answered HTTP {error.response.status_code}; retry later, "
            "or use a local copy of the model directory"
        )
    return PlanInputError(
        f"model {at} cannot be read: the Hub ({constants.ENDPOINT}) is out of reach and the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) does not hold it; check the network or proxy, or set HF_HUB_OFFLINE=1 with "
        "a filled cache"
    )


def read_hub(repo_id: str, revision: str | None = None) -> Checkpoint:
    """config.json (and the optional files) of ``repo_id`` at ``revision`` from the Hub or its local cache."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError

    def download(filename: str, optional: bool) -> Path | None:
        try:
            return Path(str(hf_hub_download(repo_id, filename, revision=revision)))
        except HFValidationError as error:
            raise PlanInputError(f"model {repo_id!r} is not a Hub model id: {error}") from None
        except EntryNotFoundError as error:
            # A file the repo does not have; offline, also a file the cache does not hold.
            if optional:
                return None
            if error.__class__.__name__ == "RemoteEntryNotFoundError":
                raise PlanInputError(
                    f"model {repo_id} has no {filename} on the Hub: it is not a transformers checkpoint vLLM can load"
                ) from None
            raise _hub_error(repo_id, revision, error) from None
        except Exception as error:  # huggingface_hub's HTTP and connection errors
            if optional and not _is_access_error(error):
                return None
            raise _hub_error(repo_id, revision, error) from None

    config_path = download(CONFIG_FILE, optional=False)
    assert config_path is not None
    config = _read_json(config_path, "model config")
    if not isinstance(config, Mapping):
        raise PlanInputError(f"model {repo_id}: {CONFIG_FILE} is not a JSON object")
    quant, hint, caveats = None, "", []
    if not isinstance(config.get("quantization_config"), Mapping):
        for name, method in zip(QUANT_CONFIG_FILES, ("gptq", "awq"), strict=True):
            found = download(name, optional=True)
            if found is not None:
                quant, hint = _read_json(found, "quantization config"), method
                break
        unknown = [
            name for name in QUANT_CONFIG_FILES if try_to_load_from_cache(repo_id, name, revision=revision) is None
        ]
        if quant is None and unknown:
            # Neither the file nor huggingface_hub's marker for "the Hub has no such file" (.no_exist) is cached:
            # the Hub was not asked (offline, out of reach), so AutoGPTQ/AutoAWQ quantization may be missed.
            caveats.append(
                f"the Hugging Face cache does not say whether {repo_id} has {' or '.join(unknown)} (AutoGPTQ/AutoAWQ "
                f"keep the quantization there), so the weights are planned as its config.json says; run `hf download "
                f"{repo_id} --include '*.json'` where the Hub is reachable if that is wrong"
            )
    index_path = download(SAFETENSORS_INDEX_FILE, optional=True)
    total = _total_size(_read_json(index_path, "safetensors index"), repo_id) if index_path else None
    # The cache keeps files under snapshots/<commit>/ (file_download.py, _get_pointer_path).
    commit = config_path.parent.name if config_path.parent.parent.name == "snapshots" else None
    return Checkpoint(
        name=repo_id,
        config=_with_quantization(config, quant, hint),
        safetensors_total_bytes=total,
        revision=revision,
        commit=commit,
        source=f"hub:{repo_id}@{commit or revision or 'main'}",
        caveats=tuple(caveats),
    )


def _is_access_error(error: Exception) -> bool:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    return isinstance(error, RepositoryNotFoundError | RevisionNotFoundError)


def read_checkpoint(source: str | Path, revision: str | None = None) -> Checkpoint:
    """A local config.json or model directory when ``source`` exists, else a Hub model id."""
    text = str(source)
    if Path(text).exists() or not is_hub_id(text):
        if revision:
            raise PlanInputError(f"revision {revision!r} applies to Hub model ids, not to the local path {text!r}")
        return read_local(Path(text))
    return read_hub(text, revision)
