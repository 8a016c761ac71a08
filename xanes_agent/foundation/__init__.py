"""What every room stands on, importing nothing of the package: absorption edges, normalization
and E0, energy ranges, JSON safety, and the registry of predicted properties and data labels.

Imports run one way: foundation <- data <- models <- agent <- plans <- cli (``tests/test_layers.py``).
"""
