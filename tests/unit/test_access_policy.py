"""The allow-list covers every method of the protos, and only identities that exist."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from marrowscope.core import access
from marrowscope.core.pki import CLIENT_ONLY, IDENTITIES, ensure_local_pki
from marrowscope.v1 import (
    curation_pb2,
    inference_pb2,
    orchestrator_pb2,
    segmentation_pb2,
    training_pb2,
)

PROTOS = (segmentation_pb2, inference_pb2, training_pb2, curation_pb2, orchestrator_pb2)


def proto_methods() -> set[str]:
    return {
        f"/{service.full_name}/{method.name}"
        for module in PROTOS
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }


def test_every_method_has_a_rule_and_every_rule_a_method() -> None:
    assert set(access.ACCESS_POLICY) == proto_methods()
    for method, identities in access.ACCESS_POLICY.items():
        assert identities, f"{method} allows nobody"
        assert identities <= set(IDENTITIES), f"{method}: unknown {identities - set(IDENTITIES)}"


def test_unknown_methods_and_anonymous_callers_are_denied() -> None:
    assert not access.allowed("/marrowscope.v1.InferenceService/Unknown", "admin")
    assert not access.allowed("/marrowscope.v1.InferenceService/Classify", None)
    assert access.allowed("/grpc.health.v1.Health/Check", None)
    assert access.allowed("/marrowscope.v1.InferenceService/LoadModel", "orchestrator")
    assert not access.allowed("/marrowscope.v1.InferenceService/LoadModel", "lis-api")


def test_local_pki_issues_one_identity_per_service(tmp_path: Path) -> None:
    pki = ensure_local_pki(tmp_path / "pki")
    ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
    for identity in IDENTITIES:
        cert = x509.load_pem_x509_certificate(pki.cert_file(identity).read_bytes())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == identity
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
        if identity in CLIENT_ONLY:  # calls only: may not serve, names no host
            assert ExtendedKeyUsageOID.SERVER_AUTH not in usage
            assert names.get_values_for_type(x509.DNSName) == [identity]
            assert not names.get_values_for_type(x509.IPAddress)
        else:
            assert ExtendedKeyUsageOID.SERVER_AUTH in usage
            assert identity in names.get_values_for_type(x509.DNSName)
        assert stat.S_IMODE(pki.key_file(identity).stat().st_mode) == 0o600
    # Idempotent: a second call keeps the CA and the certificates.
    before = pki.cert_file("admin").read_bytes()
    again = ensure_local_pki(tmp_path / "pki")
    assert again.cert_file("admin").read_bytes() == before
    # A lost CA key re-issues everything under a new CA.
    (tmp_path / "pki" / "ca.key").unlink()
    renewed = ensure_local_pki(tmp_path / "pki")
    assert renewed.cert_file("admin").read_bytes() != before


def test_the_local_stack_passes_settings_not_the_shell_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run/stack.json and the service processes get the services' settings only: nothing of
    the user's shell (here a cloud credential) is copied."""
    from marrowscope.cli import stack

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-marrowscope")
    monkeypatch.setenv("MARROWSCOPE_TRAINING_TORCH_THREADS", "1")
    paths = stack.StackPaths(tmp_path)
    tokens = {"admin_token": "a" * 32, "service_token": "s" * 32, "lis_api_key": "k" * 32}
    env = stack.service_environment(paths, "postgresql://x", stack.ports(40000), tokens)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "PATH" not in env
    assert env["MARROWSCOPE_TRAINING_TORCH_THREADS"] == "1"
    assert env["INFERENCE_ADDR"] == "127.0.0.1:40001"
    # Each process gets its own identity on top.
    assert paths.pki.environment("lis-api")["GRPC_TLS_CERT_FILE"].endswith("lis-api.crt")


def test_certificates_command_names_the_hosts_given(tmp_path: Path) -> None:
    from marrowscope.cli.main import main

    assert main(["certificates", "--out", str(tmp_path / "pki"), "--host", "ms.lab.example"]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "pki" / "inference.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "ms.lab.example" in names.get_values_for_type(x509.DNSName)
    assert "inference" in names.get_values_for_type(x509.DNSName)


def test_every_call_in_the_code_is_allowed_to_its_caller() -> None:
    """Each service's (and the CLI's) calls of another service's RPC, found in its source, are
    in the allow-list for its identity: a new call edge without a rule fails here, not in a
    cluster."""
    import re

    by_name: dict[str, str] = {}
    for path in proto_methods():
        name = path.rsplit("/", 1)[1]
        assert name not in by_name, f"{name} is in two services: make this test smarter"
        by_name[name] = path
    package = Path(__file__).resolve().parents[2] / "services" / "marrowscope"
    callers = {
        "orchestrator": "orchestrator",
        "lis_api": "lis-api",
        "curation": "curation",
        "training": "training",
        "inference": "inference",
        "segmentation": "segmentation",
        "cli": "admin",
    }
    # Calls, and references such as `stub.Start if ... else stub.Pause`.
    call = re.compile(r"\.(" + "|".join(sorted(by_name)) + r")\b")
    found: set[tuple[str, str]] = set()
    for folder, identity in callers.items():
        for source in (package / folder).rglob("*.py"):
            if source.name in ("servicer.py", "access.py"):  # implementations, not calls
                continue
            for name in call.findall(source.read_text()):
                found.add((identity, by_name[name]))
    assert ("orchestrator", "/marrowscope.v1.SegmentationService/CropCenterCell") in found
    refused = sorted(f"{who} -> {what}" for who, what in found if not access.allowed(what, who))
    assert not refused, refused
    # And nothing more: a service may call exactly what its code calls (least privilege).
    granted = {
        (who, method)
        for method, identities in access.ACCESS_POLICY.items()
        for who in identities
        if who != "admin"
    }
    unused = sorted(f"{who} -> {what}" for who, what in granted - found)
    assert not unused, unused


def test_callers_refuse_half_a_tls_configuration_and_silent_plaintext(tmp_path: Path) -> None:
    from marrowscope.core.settings import PeerSettings

    pki = ensure_local_pki(tmp_path / "pki", ["inference"])
    with pytest.raises(ValueError, match="need mutual TLS"):
        PeerSettings().tls()
    assert PeerSettings(GRPC_ALLOW_PLAINTEXT=True).tls() is None  # chosen, not fallen into
    with pytest.raises(ValueError, match="needs all of"):
        PeerSettings(GRPC_TLS_CA_FILE=pki.ca_file).tls()
    with pytest.raises(ValueError, match="needs all of"):
        PeerSettings(GRPC_TLS_CERT_FILE=pki.cert_file("inference")).tls()
    full = PeerSettings(**pki.environment("inference")).tls()
    assert full is not None and full.cert and full.key
