"""Run the inference service: ``python -m marrowscope.inference``."""

from marrowscope.core.runtime import (
    open_resources,
    prepare_process,
    serve,
)
from marrowscope.v1 import inference_pb2_grpc

from .classifier import Classifier
from .servicer import SERVICE_NAME, InferenceServicer
from .settings import InferenceSettings


def main() -> None:
    prepare_process("inference", InferenceSettings)
    settings = InferenceSettings()
    resources = open_resources()
    classifier = Classifier(resources.pool, resources.store, settings)
    classifier.try_warm_production()
    servicer = InferenceServicer(classifier)

    async def close() -> None:
        classifier.close()

    serve(
        settings,
        [SERVICE_NAME],
        lambda server: inference_pb2_grpc.add_InferenceServiceServicer_to_server(servicer, server),
        on_stop=close,
        resources=resources,
    )


if __name__ == "__main__":
    main()
