"""Run the inference service: ``python -m marrowscope.inference``."""

from marrowscope.core.logs import configure_logging
from marrowscope.core.runtime import open_resources, return_large_allocations_to_the_os, serve
from marrowscope.v1 import inference_pb2_grpc

from .classifier import Classifier
from .servicer import SERVICE_NAME, InferenceServicer
from .settings import InferenceSettings


def main() -> None:
    configure_logging("inference")
    return_large_allocations_to_the_os()
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
