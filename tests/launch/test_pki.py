"""Throwaway credentials of one run: a CA and server certificate for TLS, and SuperNode key pairs."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from fl_runtime.launch.pki import VALIDITY, create_node_key, create_tls


def test_throwaway_credentials_verify_and_private_keys_are_private(tmp_path):
    tls = create_tls(tmp_path / "tls", ["10.0.1.25", "notebook.internal"])
    ca = x509.load_pem_x509_certificate(tls.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_certificate.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"10.0.1.25", "127.0.0.1"}
    assert set(names.get_values_for_type(x509.DNSName)) == {"notebook.internal"}
    key = create_node_key(tmp_path / "keys", "client_1")
    assert load_ssh_private_key(key.private_key.read_bytes(), password=None).curve.name == "secp384r1"
    load_ssh_public_key(key.public_key.read_bytes())
    for private in (tls.server_key, key.private_key):
        assert private.stat().st_mode & 0o777 == 0o600


def test_the_server_certificate_is_for_servers_only_and_its_ca_signs_nothing_but_it(tmp_path):
    tls = create_tls(tmp_path / "tls", ["10.0.1.25"])
    ca = x509.load_pem_x509_certificate(tls.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_certificate.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == "10.0.1.25"


def test_credentials_expire_within_the_validity_of_one_run(tmp_path):
    tls = create_tls(tmp_path / "tls", ["127.0.0.1"])
    for path in (tls.ca_certificate, tls.server_certificate):
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        assert lifetime <= VALIDITY + dt.timedelta(minutes=5)
        assert certificate.not_valid_before_utc <= dt.datetime.now(dt.UTC)


def test_every_run_and_every_node_gets_keys_of_its_own(tmp_path):
    first, second = create_tls(tmp_path / "a", ["127.0.0.1"]), create_tls(tmp_path / "b", ["127.0.0.1"])
    assert first.server_key.read_bytes() != second.server_key.read_bytes()
    one, two = create_node_key(tmp_path / "keys", "one"), create_node_key(tmp_path / "keys", "two")
    assert one.public_key.read_bytes() != two.public_key.read_bytes()
    assert one.public_key.read_bytes().startswith(b"ecdsa-sha2-nistp384 ")
