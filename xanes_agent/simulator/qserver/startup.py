"""Queue-server worker namespace: a RunEngine, the simulated beamline and the XAS plans.

Devices: ``det`` (transmission detector) and ``mono_energy`` (monochromator); plans:
``xas_survey_scan``, ``xas_ranges_scan`` and bluesky's ``count``/``scan``/``list_scan``. ``RE.md``
carries the sample's ``element``, ``edge`` and ``xas`` field names (never its true labels).
"""

import os

from bluesky import RunEngine
from bluesky.plans import count, list_scan, scan  # noqa: F401 - offered to the queue

from xanes_agent.data.library import load_bundled_library
from xanes_agent.plans import xas_ranges_scan, xas_survey_scan  # noqa: F401 - offered to the queue
from xanes_agent.simulator import make_beamline, sample_from_library

_lib = load_bundled_library()
_id = os.environ.get("XANES_AGENT_SAMPLE")
_sample = sample_from_library(_lib, sample_id=_id) if _id else \
    sample_from_library(_lib, element="Cu", split="test", rng=int(os.environ.get("XANES_AGENT_SEED", "0")))
_bl = make_beamline(_sample, seed=int(os.environ.get("XANES_AGENT_SEED", "0")), flux=1e8,
                    mono_name="mono_energy", det_name="det")
det, mono_energy = _bl.det, _bl.mono

RE = RunEngine({})
RE.md.update(_bl.md)
_publish = os.environ.get("XANES_AGENT_PUBLISH")
if _publish:
    from bluesky.callbacks.zmq import Publisher

    from xanes_agent.agent.wire import pack  # data-only msgpack: the agent never unpickles

    RE.subscribe(Publisher(_publish, serializer=pack))
