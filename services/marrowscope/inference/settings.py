"""Inference service settings (env prefix ``MARROWSCOPE_INFERENCE_``)."""

from marrowscope.core.onnx_providers import ConvAlgoSearch
from marrowscope.core.settings import DEFAULT_PORTS, GrpcServerSettings, settings_config


class InferenceSettings(GrpcServerSettings):
    model_config = settings_config("MARROWSCOPE_INFERENCE_")
    port: int = DEFAULT_PORTS["inference"]
    intra_op_threads: int = 0  # 0 = ONNX Runtime's default (all cores)
    max_batch: int = 64  # micro-batch: most cells per model call
    # micro-batch: longest wait for more cells after the first. 0 = continuous batching: a
    # model call takes whatever is queued, and cells arriving meanwhile form the next batch.
    max_wait_ms: float = 0.0
    # ONNX Runtime's worker threads spin while idle; off, they leave the cores to decoding.
    allow_spinning: bool = False
    decode_workers: int = 4
    # Model inputs of content-addressed cells kept between requests (an SSL round predicts the
    # same pool every round); 0 turns the cache off.
    pixel_cache_mb: int = 512
    prefer_cuda: bool = True
    # On CUDA: how cuDNN picks convolution algorithms (see core.onnx_providers).
    cudnn_conv_algo_search: ConvAlgoSearch = "HEURISTIC"
    max_cells_per_request: int = 1024
    # Versions kept loaded at once (least recently used out): production plus the versions
    # campaigns and evaluations are using. Both bounds hold; the newest load always stays.
    max_loaded_models: int = 4
    max_loaded_model_mb: int = 1024
    # How long a resolved alias ('production') is trusted before the registry is asked again.
    alias_ttl_s: float = 2.0
