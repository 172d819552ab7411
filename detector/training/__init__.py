"""Training the deepfake classifier: face cache, split, self-blended batches, fitting, calibration."""
