"""The science core: normalization, featurization, seed-ensemble random forests, metrics, bundles, reports."""
