"""The face detectors' names, written once: ``faces.detector``, a model card's ``face_detector``
and ``detector.face_detect``'s registry all use these (kept free of cv2 so config loads fast)."""

from __future__ import annotations

HAAR = "haar"
YUNET = "yunet"
FACE_DETECTORS = (HAAR, YUNET)
AUTO = "auto"   # faces.detector only: the card's detector when usable, else Haar

# faces.yunet_runtime: what runs YuNet's network. auto = OpenVINO when installed, else OpenCV.
YUNET_OPENCV = "opencv"      # cv2.FaceDetectorYN
YUNET_OPENVINO = "openvino"  # the same ONNX file in OpenVINO (float32), decoded like OpenCV
YUNET_RUNTIMES = (AUTO, YUNET_OPENCV, YUNET_OPENVINO)
