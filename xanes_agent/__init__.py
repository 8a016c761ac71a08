"""xanes-agent: interpretable random-forest XANES models in the Bluesky control loop.

Subpackages
-----------
data       spectra, structures, labels, FEFF10 runs and the bundled reference library
models     normalization, featurization, seed-ensemble random forests, metrics, bundles, reports
simulator  ophyd devices replaying computed spectra with counting noise
agent      the streaming document consumer that predicts and proposes energy ranges
plans      Bluesky plans, including the adaptive XANES scan
"""

__version__ = "0.1.0"
