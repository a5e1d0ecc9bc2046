"""A member's long-lived identity key: ECDSA on P-256 with SHA-256, the key in the member's own account.

It signs one thing per run, the member's announcement of its fresh per-run keys (``run_keys``); everything
else of the run is signed with those. In AWS the key is a KMS asymmetric key (``ECC_NIST_P256``,
``SIGN_VERIFY``) of the member's client stack, whose private half never leaves KMS; on one machine it is a PEM
file that ``local`` generates. The other members recognise it by its fingerprint, the SHA-256 of its public
key in DER (SubjectPublicKeyInfo), pinned in their own settings (``pins``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fl_runtime.errors import ConfigError

SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Identity(Protocol):
    def public_key(self) -> bytes: ...  # DER SubjectPublicKeyInfo
    def sign(self, message: bytes) -> bytes: ...  # DER ECDSA signature of SHA-256(message)


def fingerprint(public_key: bytes) -> str:
    return "sha256:" + hashlib.sha256(public_key).hexdigest()


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is the P-256 identity key's ECDSA signature of ``message``."""
    try:
        key = serialization.load_der_public_key(public_key)
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return False
    try:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


class FileIdentity:
    """An identity key in a PEM file (one machine: ``local`` and the tests)."""

    def __init__(self, path: Path) -> None:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError) as error:
            raise ConfigError(f"{path}: not a readable PEM private key ({error})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ConfigError(f"{path}: an identity key must be an EC P-256 private key")
        self._key = key

    def public_key(self) -> bytes:
        return self._key.public_key().public_bytes(*SPKI)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))


class KmsIdentity:
    """An identity key in AWS KMS (``ECC_NIST_P256``): KMS signs the SHA-256 digest; the key never leaves it.

    The calls are made by the member's own installed runtime (``fl_runtime.aws.kms_identity``), in a process of
    its own: the Flower app carries no AWS SDK and no credentials pass through it; it hands over a digest and
    receives a signature.
    """

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        self._public: bytes | None = None

    def _call(self, action: str, data: bytes = b"") -> bytes:
        done = subprocess.run(
            [sys.executable, "-m", "fl_runtime.aws.kms_identity", action, self.key_id],
            input=base64.b64encode(data),
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise ConfigError(
                f"identity key {self.key_id}: {action} failed: {done.stderr.decode(errors='replace')[-500:]}"
            )
        return base64.b64decode(done.stdout)

    def public_key(self) -> bytes:
        if self._public is None:
            self._public = self._call("public-key")
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._call("sign", hashlib.sha256(message).digest())


def load_identity(reference: str) -> Identity:
    """``file:/path/key.pem`` or ``kms:<key or alias ARN>`` (``pins.ClientPins.identity``)."""
    if reference.startswith("file:"):
        return FileIdentity(Path(reference.removeprefix("file:")))
    if reference.startswith("kms:"):
        return KmsIdentity(reference.removeprefix("kms:"))
    raise ConfigError(f"identity: {reference!r} is neither file:/<path> nor kms:<key ARN>")


def create_identity_key(path: Path) -> str:
    """A new P-256 identity key in a PEM file readable by its owner only; returns its fingerprint."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return fingerprint(key.public_key().public_bytes(*SPKI))
