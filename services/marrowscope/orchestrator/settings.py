"""Orchestrator settings (env prefix ``MARROWSCOPE_ORCHESTRATOR_``)."""

from pydantic import SecretStr

from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class OrchestratorSettings(GrpcServerSettings):
    model_config = settings_config("MARROWSCOPE_ORCHESTRATOR_")
    port: int = DEFAULT_PORTS["orchestrator"]
    curation_token: SecretStr = SecretStr("")  # a 'service' user's token on the curation service
    review_poll_seconds: float = 2.0
    classify_chunk: int = 256
    training_deadline_s: float = 6 * 3600.0
