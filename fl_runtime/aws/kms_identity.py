"""A member's identity key in KMS, for its ClientApp: ``python -m fl_runtime.aws.kms_identity ACTION KEY``.

- ``public-key KEY``: prints the key's public key (DER SubjectPublicKeyInfo), base64;
- ``sign KEY``: reads a base64 SHA-256 digest on stdin, prints KMS's ECDSA_SHA_256 signature of it (DER), base64.

The Flower app (``app.identity.KmsIdentity``) runs this from the member's own installed runtime, so the code that
holds AWS credentials and calls KMS is the client's, not the app the server distributes. One call per run: the
identity key signs the member's per-run keys, and rounds never call KMS.
"""

from __future__ import annotations

import base64
import sys


def main(argv: list[str] | None = None) -> int:
    import boto3

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("public-key", "sign"):
        print("usage: python -m fl_runtime.aws.kms_identity public-key|sign KEY_ARN", file=sys.stderr)
        return 2
    action, key = args
    kms = boto3.client("kms", region_name=key.split(":")[3])
    if action == "public-key":
        answer = bytes(kms.get_public_key(KeyId=key)["PublicKey"])
    else:
        digest = base64.b64decode(sys.stdin.buffer.read(), validate=True)
        answer = bytes(
            kms.sign(KeyId=key, Message=digest, MessageType="DIGEST", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
        )
    sys.stdout.write(base64.b64encode(answer).decode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
