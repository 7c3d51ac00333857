"""Reading model files of the old pickle-based format (format 1), for ``churnguard convert-model`` only.

A format 1 file is a magic line, a JSON header line (payload length, SHA-256 and an HMAC-SHA256 signature)
and a joblib pickle of the model's data. Unpickling can run code, so the payload is unpickled only after the
signature checks against the key the file was signed with: ``$CHURNGUARD_MODEL_KEY`` or, when unset, the key
file ``$CHURNGUARD_KEY_FILE`` (default ``~/.config/churnguard/model.key``). Nothing else in churnguard reads
these files or uses the key.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from pathlib import Path
from typing import Any

from churnguard.model._modelcore import Calibrator
from churnguard.model.churn_model import _OLD_MAGIC, ChurnModel, ModelFileError

_MAX_HEADER = 64 * 1024


MIN_KEY_BYTES = 16


def _signing_key() -> bytes:
    """The key from ``$CHURNGUARD_MODEL_KEY`` or the key file; a key under :data:`MIN_KEY_BYTES` is refused:
    a signature made with it can be forged by trying keys."""
    env = os.environ.get("CHURNGUARD_MODEL_KEY")
    path = Path(os.environ.get("CHURNGUARD_KEY_FILE") or Path.home() / ".config" / "churnguard" / "model.key")
    if not env and not path.is_file():
        raise ModelFileError(
            f"no model signing key: set CHURNGUARD_MODEL_KEY or provide the key file {path} that the old model "
            "file was signed with; without it the file cannot be checked, and it is not unpickled unchecked"
        )
    key = env.encode() if env else path.read_text().strip().encode()
    if len(key) < MIN_KEY_BYTES:
        where = "CHURNGUARD_MODEL_KEY" if env else f"the key file {path}"
        raise ModelFileError(f"the signing key in {where} is {len(key)} bytes long; a key under {MIN_KEY_BYTES} "
                             "bytes can be guessed, so a file signed with it proves nothing and is not unpickled")
    return key


def _verified_payload(path: Path) -> bytes:
    """The pickled payload of a format 1 file, after its length, digest and signature have been checked."""
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    blob = path.read_bytes()
    if not blob.startswith(_OLD_MAGIC):
        raise ModelFileError(f"{path}: not a model file of the old pickle-based format (format 1)")
    end = blob.find(b"\n", len(_OLD_MAGIC), len(_OLD_MAGIC) + _MAX_HEADER)
    try:
        header = json.loads(blob[len(_OLD_MAGIC) : end])
        expected_bytes, expected_sha = int(header["payload_bytes"]), str(header["payload_sha256"])
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(f"{path}: the model file header is damaged") from None
    if header.get("format") != 1:
        raise ModelFileError(f"{path}: old model file of format {header.get('format')}, expected format 1")
    payload = blob[end + 1 :]
    if len(payload) != expected_bytes:
        raise ModelFileError(f"{path}: the model file is truncated or padded ({len(payload)} payload bytes, "
                             f"expected {expected_bytes})")
    if hashlib.sha256(payload).hexdigest() != expected_sha:
        raise ModelFileError(f"{path}: the model file is corrupted (checksum mismatch)")
    signature = hmac.new(_signing_key(), payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, str(header.get("signature"))):
        raise ModelFileError(
            f"{path}: the model file's signature does not match the signing key: it was changed after it was "
            "written, or signed with another key (set CHURNGUARD_MODEL_KEY to the key it was trained with). "
            "Refusing to unpickle it"
        )
    return payload


def read_legacy_model(path: str | Path) -> ChurnModel:
    """Load a format 1 model file whose signature checks, as a :class:`ChurnModel` with typed info."""
    import joblib
    import lightgbm as lgb

    path = Path(path)
    data = joblib.load(io.BytesIO(_verified_payload(path)))
    try:
        info = _legacy_info(data["metadata"]) if data["metadata"] else None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the old model file's metadata cannot be converted ({type(exc).__name__}: "
                             f"{exc}); retrain the model with 'churnguard train'") from None
    model = ChurnModel(**data["settings"], info=info)
    model.booster_ = lgb.Booster(model_str=data["booster"])
    model.calibrator_ = Calibrator.from_dict(data["calibrator"])
    model.feature_names_ = list(data["feature_names"])
    model.categories_ = dict(data["categories"])
    model.best_iteration_ = int(data["best_iteration"])
    return model


def _legacy_info(meta: dict[str, Any]):
    """The format 1 metadata dict (as ``churnguard.training.run.model_metadata`` wrote it) as a ModelInfo."""
    from churnguard.model.info import ModelInfo

    lifespan = meta["summary"].get("lifespan_years")
    if lifespan is None:
        raise KeyError("summary.lifespan_years")
    return ModelInfo.from_dict({
        **meta,
        "model_version": meta.get("model_version", meta["package_version"]),
        "population": {"lifespan_years": lifespan, "vip_cltv_threshold": meta["vip_cltv_threshold"],
                       "bgnbd": meta["bgnbd_params"], "horizon_days": meta["horizon_days"], "attributes": None},
    })


def convert_model_file(old: str | Path, new: str | Path) -> Path:
    """Convert a model file of the old pickle-based format (format 1) into the current format.

    The old file is unpickled only after its HMAC-SHA256 signature checks against ``$CHURNGUARD_MODEL_KEY``
    (or the key file ``$CHURNGUARD_KEY_FILE``, default ``~/.config/churnguard/model.key``) it was signed with,
    so run this once, on a machine holding that key. Predictions of the converted model are the same.

    Raises:
        ModelFileError: the old file is missing, not in the old format, damaged, or its signature does not
            match the key (or there is no key).
    """
    return read_legacy_model(old).save(new)
