"""The decoding a checkpoint ships with: chosen by evaluation, not guessed in the settings.

A checkpoint directory may hold `decoding.json` (DecodingSettings fields; a reverse model's path
is relative to that directory). It applies when the operator has set no decoding setting at all:
any `CHATBOT_DECODING__*` variable or CLI decoding flag means the operator decides, and then the
settings are used exactly as given.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from config import DecodingSettings
from nlp.errors import CheckpointError

DECODING = "decoding.json"


def recommended_decoding(checkpoint_dir: Path) -> DecodingSettings | None:
    """The checkpoint's own decoding, or None when it ships none."""
    path = Path(checkpoint_dir) / DECODING
    if not path.is_file():
        return None
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(fields, dict):
            raise TypeError("not a JSON object")
        if fields.get("mmi_reverse_dir") is not None:
            fields["mmi_reverse_dir"] = (path.parent / fields["mmi_reverse_dir"]).resolve()
        return DecodingSettings.model_validate(fields)
    except (OSError, ValueError, TypeError, ValidationError) as exc:
        raise CheckpointError(f"invalid {path}: {' '.join(str(exc).split())}") from exc


def choose_decoding(configured: DecodingSettings, *checkpoint_dirs: Path) -> DecodingSettings:
    """`configured` when the operator set any of it; otherwise the first recommendation found
    among `checkpoint_dirs` (a retrained version first, then the model it descends from)."""
    if configured.model_fields_set:
        return configured
    for directory in checkpoint_dirs:
        recommended = recommended_decoding(directory)
        if recommended is not None:
            return recommended
    return configured


def changed_decoding(base: DecodingSettings, changes: str) -> DecodingSettings:
    """`base` with the fields of a JSON object changed (`chatbot eval --compare-decoding`, the
    prompt-reply tool); ValueError for anything that is not a JSON object of valid settings
    (NaN and Infinity included: JSON has neither)."""
    given = json.loads(changes, parse_constant=_no_json_constant)
    if not isinstance(given, dict):
        raise ValueError(f"the changes are a JSON object, not {changes!r}")
    return base.model_validate({**base.model_dump(), **given})


def _no_json_constant(name: str) -> float:
    """Python's JSON reader takes NaN and Infinity, which JSON does not have."""
    raise ValueError(f"{name} is not a JSON number")
