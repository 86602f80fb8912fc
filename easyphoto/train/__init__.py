"""Training: photo selection → dataset → LoRA training → validation → merge → export."""
