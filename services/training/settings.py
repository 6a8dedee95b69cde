"""Training service settings (env prefix ``MARROWSCOPE_TRAINING_``)."""

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class TrainingSettings(GrpcServerSettings):
    model_config: SettingsConfigDict = settings_config("MARROWSCOPE_TRAINING_")
    port: int = DEFAULT_PORTS["training"]
    job_log_dir: Path = Path(".marrowscope/logs/jobs")
    max_concurrent_jobs: int = 1
    torch_threads: int = 0  # 0 = all cores
    model_width: int = 32  # channels of the first stage (the paper-like default)
