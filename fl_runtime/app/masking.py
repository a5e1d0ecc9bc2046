"""Pairwise masks that hide each member's vector and cancel in the members' sum.

Every two members agree a key once per run: X25519 between their per-run exchange keys (``signed``), through
HKDF-SHA256 salted with the run's transcript after the key exchange and bound to the pair's names. For each
step and attempt, the pair's mask is a ChaCha20 key stream of that key, with a nonce naming the step and
attempt, read as 64-bit words. The member with the smaller name adds it, the other subtracts it; in the sum
of all members' vectors (modulo 2^64) every pair's mask cancels, while one member's vector alone is its value
plus masks the server cannot compute. A re-run of a step (``attempt`` + 1) uses fresh masks: a mask stream is
never applied to two different answers. Only ``cryptography``'s primitives; nothing hand-made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASK_INFO = b"fl-relay/1 mask\n"


def pair_key(own: X25519PrivateKey, peer_public: bytes, salt: bytes, first: str, second: str) -> bytes:
    """The key members ``first`` and ``second`` share for this run (the same whichever of them computes it)."""
    low, high = sorted((first, second))
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    info = MASK_INFO + low.encode() + b"\n" + high.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)


def mask_stream(key: bytes, step: str, length: int) -> np.ndarray:
    """``length`` words of the pair's mask for one step and attempt (``step`` names both)."""
    nonce = b"\0\0\0\0" + hashlib.sha256(step.encode()).digest()[:12]  # 32-bit block counter, 96-bit nonce
    encryptor = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()
    stream = encryptor.update(bytes(8 * length))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64)


def mask(vector: np.ndarray, me: str, keys: Mapping[str, bytes], step: str) -> np.ndarray:
    """``vector`` plus this member's side of every pair's mask with the members in ``keys`` (the step's others)."""
    masked = vector.astype(np.uint64, copy=True)
    for peer, key in keys.items():
        stream = mask_stream(key, step, len(vector))
        if me < peer:
            masked += stream
        else:
            masked -= stream
    return masked
