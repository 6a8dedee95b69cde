"""The inference service over real gRPC: per-cell errors, streaming, hot swap under load."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import torch

from marrowscope.core.db import DictPool
from marrowscope.core.errors import FailedPrecondition
from marrowscope.core.images import encode_png
from marrowscope.core.objectstore import FilesystemObjectStore, put_content_addressed
from marrowscope.core.preprocess import InputSpecData, decode_for_model, preprocess
from marrowscope.core.rpc import GrpcService, open_channel
from marrowscope.core.synthetic import make_cell
from marrowscope.core.taxonomy import load_taxonomy
from marrowscope.inference.classifier import Classifier
from marrowscope.inference.servicer import SERVICE_NAME, InferenceServicer
from marrowscope.inference.settings import InferenceSettings
from marrowscope.training.model import WithSoftmax, build_model
from marrowscope.training.promotion import ModelAliases
from marrowscope.training.trainer import export_onnx
from marrowscope.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from tests.model_helpers import register_onnx

pytestmark = pytest.mark.integration
SPEC = InputSpecData(size=32)


def _register(db_pool, store, seed: int) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    taxonomy = load_taxonomy("paper17")
    torch.manual_seed(seed)
    model = build_model("se_cnn", len(taxonomy.codes), width=4).eval()
    onnx_bytes = export_onnx(model, SPEC)
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    version = register_onnx(db_pool, store, onnx_bytes, SPEC, f"test-{seed}", weights.getvalue())
    return version, onnx_bytes


@pytest.fixture()
def served(db_pool, tmp_path: Path):  # type: ignore[no-untyped-def]
    store = FilesystemObjectStore(tmp_path / "store")
    versions = [_register(db_pool, store, seed) for seed in (1, 2)]
    codes = load_taxonomy("paper17").codes
    cells = []
    images = []
    for i, code in enumerate(codes[:8]):
        rgb = make_cell(code, i).rgb
        key = put_content_addressed(store, "cells", encode_png(rgb), "image/png", ".png").key
        cells.append((f"cell-{i}", key))
        images.append(preprocess(rgb, SPEC))
    expected = {
        version: ort.InferenceSession(onnx, providers=["CPUExecutionProvider"]).run(
            None, {"image": np.stack(images)}
        )[0]
        for version, onnx in versions
    }
    settings = InferenceSettings(
        port=0, grace_seconds=0.5, max_wait_ms=2, prefer_cuda=False, alias_ttl_s=0.0
    )
    classifier = Classifier(db_pool, store, settings)
    classifier.warm(versions[0][0])
    return classifier, store, cells, expected, [v for v, _ in versions]


async def _serve(classifier: Classifier) -> GrpcService:
    servicer = InferenceServicer(classifier)
    service = GrpcService(
        InferenceSettings(port=0, grace_seconds=0.5, GRPC_ALLOW_PLAINTEXT=True),
        [SERVICE_NAME],
        lambda s: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, s),
    )
    await service.start()
    return service


def _refs(cells: list[tuple[str, str]]) -> list[common_pb2.CellRef]:
    return [common_pb2.CellRef(cell_id=c, object_key=k) for c, k in cells]


def test_bad_cells_get_their_own_error_and_the_rest_are_classified(served) -> None:  # type: ignore[no-untyped-def]
    classifier, store, cells, expected, versions = served
    corrupt = put_content_addressed(
        store, "cells", b"\x89PNG\r\n\x1a\n garbage", "image/png", ".png"
    )
    mixed = [
        cells[0],
        ("missing", "cells/00/" + "0" * 64 + ".png"),
        ("corrupt", corrupt.key),
        cells[1],
    ]

    async def scenario() -> inference_pb2.ClassifyResponse:
        service = await _serve(classifier)
        try:
            async with open_channel(service.address, "marrowscope.v1.InferenceService") as ch:
                stub = inference_pb2_grpc.InferenceServiceStub(ch)
                with pytest.raises(grpc.aio.AioRpcError) as unnamed:
                    await stub.Classify(inference_pb2.ClassifyRequest(cells=_refs(mixed)))
                assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "production" in (unnamed.value.details() or "")
                return await stub.Classify(
                    inference_pb2.ClassifyRequest(cells=_refs(mixed), model_version=versions[0])
                )
        finally:
            await service.stop()

    response = asyncio.run(scenario())
    by_id = {p.cell_id: p for p in response.predictions}
    assert [p.cell_id for p in response.predictions] == [c for c, _ in mixed]
    assert "not found" in by_id["missing"].error.lower()
    assert by_id["corrupt"].error and not by_id["corrupt"].probabilities
    for i, cell in enumerate(("cell-0", "cell-1")):
        assert not by_id[cell].error
        np.testing.assert_allclose(by_id[cell].probabilities, expected[versions[0]][i], atol=1e-5)
        assert by_id[cell].margin == pytest.approx(
            by_id[cell].top1_probability - by_id[cell].top2_probability
        )


def test_two_versions_served_at_once_never_mix_and_loading_one_changes_nothing_else(
    served: tuple,
) -> None:
    """Two streams, each naming its own version, run together while LoadModel warms versions
    in between: every chunk is classified by the version it named, and only by it."""
    classifier, _, cells, expected, versions = served
    chunks = 30

    async def scenario() -> dict[str, list[inference_pb2.ClassifyResponse]]:
        service = await _serve(classifier)
        try:
            async with open_channel(service.address, "marrowscope.v1.InferenceService") as ch:
                stub = inference_pb2_grpc.InferenceServiceStub(ch)

                async def warm_others() -> None:
                    for n in range(12):
                        await stub.LoadModel(
                            inference_pb2.LoadModelRequest(model_version=versions[n % 2])
                        )
                        await asyncio.sleep(0.01)

                async def stream(version: str) -> list[inference_pb2.ClassifyResponse]:
                    requests = [
                        inference_pb2.ClassifyRequest(cells=_refs(cells), model_version=version)
                        for _ in range(chunks)
                    ]
                    return [r async for r in stub.ClassifyStream(iter(requests))]

                first, second, _ = await asyncio.gather(
                    stream(versions[0]), stream(versions[1]), warm_others()
                )
                return {versions[0]: first, versions[1]: second}
        finally:
            await service.stop()

    responses = asyncio.run(scenario())
    for version, answered in responses.items():
        assert len(answered) == chunks
        for response in answered:
            assert len(response.predictions) == len(cells)
            assert {p.model_version for p in response.predictions} == {response.model_version}
            got = np.array([p.probabilities for p in response.predictions])
            np.testing.assert_allclose(got, expected[version], atol=1e-5)
    assert {m.record.id for m in classifier.loaded()} == set(versions)
    classifier.close()


def test_production_alias_follows_promotion_and_the_cache_stays_bounded(
    served: tuple, db_pool: DictPool
) -> None:
    classifier, _, cells, expected, versions = served
    aliases = ModelAliases(db_pool, "paper17")
    for version in versions:
        aliases.promote(version, "production", "tests", f"serve {version}", force=True)
        predictions, record = classifier.classify(cells, "production")
        assert record.id == version  # alias_ttl_s=0: the promotion is seen at once
        np.testing.assert_allclose(
            [p.probabilities for p in predictions], expected[version], atol=1e-5
        )
    bounded = Classifier(
        db_pool,
        classifier.store,
        InferenceSettings(prefer_cuda=False, max_loaded_models=1, alias_ttl_s=0.0),
    )
    for version in (*versions, versions[0]):
        predictions, record = bounded.classify(cells, version)
        assert [m.record.id for m in bounded.loaded()] == [version]  # least recently used out
        np.testing.assert_allclose(
            [p.probabilities for p in predictions], expected[version], atol=1e-5
        )
    classifier.close()
    bounded.close()


def _register_float_input_model(db_pool, store, spec: InputSpecData) -> str:  # type: ignore[no-untyped-def]
    """A model as trained before the normalisation moved into the graph: float input."""
    taxonomy = load_taxonomy("paper17")
    torch.manual_seed(3)
    model = build_model("se_cnn", len(taxonomy.codes), width=4).eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        WithSoftmax(model),
        (torch.zeros(1, 3, 32, 32),),
        buffer,  # type: ignore[arg-type]
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return register_onnx(db_pool, store, buffer.getvalue(), spec, "float-input")


def test_models_with_float_input_are_still_served_with_normalised_pixels(served, db_pool) -> None:  # type: ignore[no-untyped-def]
    classifier, store, cells, _, _ = served
    legacy = InputSpecData(size=32, dtype="float32")
    version = _register_float_input_model(db_pool, store, legacy)
    session = ort.InferenceSession(store.get(classifier.warm(version).record.artifact_key))
    blobs = [store.get(key) for _, key in cells]
    normalised = np.stack([decode_for_model(b, legacy) for b in blobs])
    assert normalised.dtype == np.float32 and normalised.min() < -1.0  # black is -2, not 0
    predictions, record = classifier.classify(cells, version)
    assert record.input_spec.dtype == "float32"
    np.testing.assert_allclose(
        [p.probabilities for p in predictions],
        session.run(None, {"image": normalised})[0],
        atol=1e-5,
    )
    classifier.close()


def test_a_registry_entry_that_does_not_match_its_artifact_is_refused(served, db_pool) -> None:  # type: ignore[no-untyped-def]
    classifier, store, cells, expected, versions = served
    wrong = _register_float_input_model(db_pool, store, InputSpecData(size=32, dtype="uint8"))
    with pytest.raises(FailedPrecondition, match="does not match its artifact"):
        classifier.warm(wrong)
    predictions, record = classifier.classify(cells, versions[0])  # others are still served
    assert record.id == versions[0]
    np.testing.assert_allclose(
        [p.probabilities for p in predictions], expected[versions[0]], atol=1e-5
    )
    classifier.close()


def test_repeated_cells_are_served_from_the_pixel_cache_with_the_same_answers(served) -> None:  # type: ignore[no-untyped-def]
    classifier, store, cells, expected, versions = served
    first, _ = classifier.classify(cells, versions[0])
    assert classifier.pixels.stats.entries == len(cells) and classifier.pixels.stats.hits == 0
    second, _ = classifier.classify(cells, versions[0])  # as the next SSL round re-predicts
    assert classifier.pixels.stats.hits == len(cells)
    np.testing.assert_array_equal(
        [p.probabilities for p in first], [p.probabilities for p in second]
    )
    np.testing.assert_allclose([p.probabilities for p in second], expected[versions[0]], atol=1e-5)
    # A cell whose image cannot be read is not cached: it is read again next time.
    missing = ("missing", "cells/00/" + "1" * 64 + ".png")
    for _ in range(2):
        (prediction,), _ = classifier.classify([missing], versions[0])
        assert "not found" in prediction.error.lower()
    assert classifier.pixels.stats.entries == len(cells)
    classifier.close()
