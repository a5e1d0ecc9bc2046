"""A member's identity key in KMS (moto): the Flower app signs through the member's own runtime, in a process of
its own, and the signature verifies as the other members check it."""

from __future__ import annotations

import base64
import hashlib

import boto3
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from fl_runtime.app.identity import KmsIdentity, fingerprint, verify
from fl_runtime.errors import ConfigError


@pytest.fixture
def kms_key(local_aws) -> str:
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Description="FL identity of a member")
    return key["KeyMetadata"]["Arn"]


MESSAGE = b"fl-relay/1 announcement\n{...}"


def test_a_kms_identity_asks_kms_to_sign_the_messages_sha256_digest_with_its_p256_key(kms_key, local_aws):
    """moto 5 does not implement MessageType DIGEST: it signs the digest as if it were the message (one hash
    more). So this checks the call and moto's signature of the digest; the next test shows that KMS's real DIGEST
    signature verifies as the members verify it."""
    recorder, _ = local_aws
    identity = KmsIdentity(kms_key)
    public = identity.public_key()
    signature = identity.sign(MESSAGE)
    expected = bytes(boto3.client("kms", region_name="us-east-1").get_public_key(KeyId=kms_key)["PublicKey"])
    assert fingerprint(public) == fingerprint(expected)
    [sign] = [call for call in recorder.calls if call.operation == "TrentService.Sign"]
    assert sign.body["MessageType"] == "DIGEST" and sign.body["SigningAlgorithm"] == "ECDSA_SHA_256"
    assert base64.b64decode(sign.body["Message"]) == hashlib.sha256(MESSAGE).digest()
    assert verify(public, signature, hashlib.sha256(MESSAGE).digest())  # moto's reading of DIGEST


def test_an_ecdsa_signature_of_the_digest_as_kms_makes_it_verifies_as_a_signature_of_the_message():
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(MESSAGE).digest()
    signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # what KMS Sign(MessageType=DIGEST) returns
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert verify(public, signature, MESSAGE)
    assert not verify(public, signature, MESSAGE + b" ")


def test_a_key_kms_does_not_know_is_a_clear_error_naming_it(local_aws):
    missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(ConfigError, match=f"identity key {missing}: public-key failed"):
        KmsIdentity(missing).public_key()
