"""The members' identity keys in KMS, read by a member's own runtime: the public key and fingerprint of a key.

One organisation: the stacks cannot know the members' fingerprints at synth (KMS makes the keys when the stacks
are deployed), so a pins document names each member without a configured fingerprint by its identity key's alias
ARN (``app.pins.Member.identity_key``, ``arn:<partition>:kms:<region>:<account>:alias/fl-identity-<name>``). The
member's job reads each such key's public key with ``kms:GetPublicKey`` (across accounts: the key's policy admits
the other members' training-job roles) and fills in the fingerprint before the ClientApp starts (``resolve``). A
key that cannot be read keeps its empty fingerprint: every member then refuses the run naming that member, and the
job's own log says why. Separate organisations: every fingerprint comes from the config, nothing is read here.

``doctor --client`` reads the member's own key the same way, to print its fingerprint and check it against the pins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fl_runtime.app.identity import fingerprint
from fl_runtime.app.pins import ClientPins
from fl_runtime.aws.calls import boto_config, error_code
from fl_runtime.errors import FederationError

KEY_SPEC, KEY_USAGE = "ECC_NIST_P256", "SIGN_VERIFY"  # what an identity key is (app.identity)


def kms_clients(session: Any = None) -> Callable[[str], Any]:
    """A KMS client in the region of a key's ARN, one per region (``session``: boto3's default if None)."""
    clients: dict[str, Any] = {}

    def client_for(key: str) -> Any:
        region = key.split(":")[3]
        if region not in clients:
            import boto3

            clients[region] = (session or boto3.Session()).client("kms", region_name=region, config=boto_config())
        return clients[region]

    return client_for


def public_key(kms: Any, key: str) -> bytes:
    """The DER public key (SubjectPublicKeyInfo) of identity key ``key`` (a key or alias ARN); FederationError naming
    the key if KMS refuses, cannot be reached, or the key is not a P-256 signing key."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = kms.get_public_key(KeyId=key)
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        raise FederationError(f"kms:GetPublicKey on {key} failed ({error_code(error) or 'error'}: {message})") from None
    except BotoCoreError as error:
        raise FederationError(f"kms:GetPublicKey on {key} could not reach KMS: {error}") from None
    spec = answer.get("KeySpec", answer.get("CustomerMasterKeySpec"))  # the older name, which moto answers with
    if (spec, answer.get("KeyUsage")) != (KEY_SPEC, KEY_USAGE):
        raise FederationError(
            f"{key} is a {spec} key for {answer.get('KeyUsage')}, not an identity key ({KEY_SPEC}, {KEY_USAGE})"
        )
    return bytes(answer["PublicKey"])


def key_fingerprint(kms_for: Callable[[str], Any], key: str) -> str:
    """``sha256:<hex>`` of ``key``'s public key, as the members pin and check it (``app.identity.fingerprint``)."""
    return fingerprint(public_key(kms_for(key), key))


def resolve(pins: ClientPins, kms_for: Callable[[str], Any], warn: Callable[[str], None]) -> ClientPins:
    """``pins`` with the fingerprint of every member named by its identity key filled in from KMS; a member whose key
    cannot be read keeps an empty fingerprint (``warn`` says why), and one with a fingerprint is left as it is."""
    members = []
    for member in pins.members:
        if member.fingerprint or not member.identity_key:
            members.append(member)
            continue
        try:
            found = key_fingerprint(kms_for, member.identity_key)
        except FederationError as error:
            warn(f"member {member.name}: {error}; without its fingerprint every member refuses a run with it")
            found = ""
        members.append(dataclasses.replace(member, fingerprint=found))
    return dataclasses.replace(pins, members=tuple(members))
