"""Plain PyTorch networks built from derived architectures and genotypes."""
