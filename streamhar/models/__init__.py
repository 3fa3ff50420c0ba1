"""Models: variable-width ternary 1D CNNs for HAR, their configs, costs and bundles."""
