"""A bluesky-queueserver startup profile for the simulated beamline (``--startup-module``).

    start-re-manager --startup-module xanes_agent.simulator.qserver.startup \\
        --user-group-permissions $(python -c "import xanes_agent.simulator.qserver as q; print(q.PERMISSIONS)") \\
        --existing-plans-devices ./existing_plans_and_devices.yaml --redis-addr localhost:6379

``startup`` reads ``XANES_AGENT_SAMPLE`` (a library id; default: a held-out Cu spectrum),
``XANES_AGENT_SEED`` and ``XANES_AGENT_PUBLISH`` (a 0MQ proxy input address the worker's RunEngine
publishes its documents to, for ``xanes-agent serve``).
"""

from pathlib import Path

PERMISSIONS = Path(__file__).with_name("user_group_permissions.yaml")
STARTUP_MODULE = "xanes_agent.simulator.qserver.startup"
