"""The checked-in generated code must be exactly what `make protos` produces."""

from pathlib import Path

from marrowscope.core.protogen import GENERATED_ROOT, PROTO_ROOT, generate


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    written = generate(tmp_path)
    assert written, "protoc produced nothing"
    checked_in = GENERATED_ROOT / "marrowscope" / "v1"
    fresh = {p.name: p.read_bytes() for p in written}
    committed = {p.name: p.read_bytes() for p in checked_in.glob("*_pb2*.py*")}
    assert sorted(fresh) == sorted(committed), "run `make protos` and commit the result"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"out of date: {stale}; run `make protos` and commit the result"


def test_every_service_has_a_proto() -> None:
    names = {p.stem for p in (PROTO_ROOT / "marrowscope" / "v1").glob("*.proto")}
    assert {"common", "segmentation", "inference", "training", "curation", "orchestrator"} <= names
