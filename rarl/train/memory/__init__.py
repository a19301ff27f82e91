"""The peak memory of one GRPO step, predicted without a GPU (:mod:`.predict`), by counting storages on
tensors without data (:mod:`.tracker`) with the attention kernels CUDA would pick (:mod:`.kernels`), and
the ``rarl train`` pre-flight that warns when a run will not fit its GPU (:mod:`.preflight`)."""

from rarl.train.memory.predict import (
    KERNELS,
    PHASES,
    STEPS,
    MemoryPrediction,
    StepShape,
    instrument_phases,
    predict_grpo_memory,
    prediction_config,
)
from rarl.train.memory.preflight import memory_preflight, memory_warning

__all__ = [
    "KERNELS",
    "PHASES",
    "STEPS",
    "MemoryPrediction",
    "StepShape",
    "instrument_phases",
    "memory_preflight",
    "memory_warning",
    "predict_grpo_memory",
    "prediction_config",
]
