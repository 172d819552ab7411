"""The model runtimes' names and the model card's precisions, written once: ``workers.runtime``,
the ``--runtime`` options, a card's ``precision`` and ``detector.runtime``'s registry use these
(kept free of numpy and TensorFlow so config loads fast)."""

from __future__ import annotations

AUTO = "auto"          # the card's choice: its ``precision``, LiteRT when exported, else Keras
KERAS = "keras"
LITERT = "litert"      # the float32 ``.tflite`` (card key ``tflite``)
LITERT_INT8 = "litert-int8"  # the full-integer ``.tflite`` (card key ``tflite_int8``)
OPENVINO_BF16 = "openvino-bf16"  # the float32 ``.tflite`` run by OpenVINO in bfloat16
RUNTIMES = (AUTO, KERAS, LITERT, LITERT_INT8, OPENVINO_BF16)

FLOAT32 = "float32"
INT8 = "int8"
BFLOAT16 = "bfloat16"
# A card's ``precision``: what ``auto`` runs (``bfloat16`` only where the CPU computes it natively,
# else float32).
PRECISIONS = (FLOAT32, INT8, BFLOAT16)
