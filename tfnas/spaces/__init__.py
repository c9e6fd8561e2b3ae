"""Search-space definitions: the TF-NAS MobileNetV2-style space and DARTS cells."""
