"""Garment try-on (issue 13): a garment dataset and LoRA, and the try-on that repaints one garment of a person photo.

    masks.py      the try-on mask: parsing labels or a given mask, grown, minus face/hair and hands; input errors
    pipeline.py   TryOnPipeline: crop → optional garment paste → pass 1 (LoRA + openpose/canny/depth/colour)
                  → pass 2 (inner boundary) → paste back through the mask → fidelity + infotext
    fidelity.py   garment fidelity: HSV colour histograms + gradient-orientation structure, one 0..1 score
    depth.py      DPT depth maps for the depth ControlNet (optional weights)
    training.py   the garment LoRA: the identity trainer with a garment subject, validated by fidelity

Nothing is imported here: the UI and the API import this package without loading numpy-heavy modules or models.
"""
